#!/usr/bin/env python3
"""A fleet sharing one actions/cache server (README.md, "Cache"; doc/cache.md §6):
`runnerctl cache serve --listen GATEWAY:0 --dir D --key-file K` on the Docker engine's default
bridge gateway, and runnerd processes with the Gitea double whose config says
runnerd.cache.external_url: http://GATEWAY:PORT/ (and key_file), each job in the node test
image (tests/images/build.sh node) speaking the toolkit's requests (tests/e2e/cache_client.js):

  a job on runner A saves; a job on runner B of the same repository restores the same bytes; a
  job of another repository on B misses; a runner C whose key_file is another key gets 401 (its
  job's client prints it), and the server's index holds only A's entry. Neither A nor B runs a
  server of its own: its log names the external URL, it listens on no port but its status
  endpoint's, and its /metrics has no runnerd_cache_ lines.

Environment: RUNNERCTL, RUNNERD, SRCDIR."""
import base64
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

T = lib.Tally(keep=3000, flush=True)
check = T.check


def gateway():
    """The IPv4 address of the engine's default bridge on this host (172.17.0.1 as a rule)."""
    out = subprocess.run(["docker", "network", "inspect", "bridge", "-f",
                          "{{range .IPAM.Config}}{{.Gateway}} {{end}}|"
                          "{{index .Options \"com.docker.network.bridge.name\"}}"],
                         capture_output=True, text=True).stdout.strip()
    gws, _, ifname = out.partition("|")
    for gw in gws.split():
        if "." in gw:
            return gw
    ip = subprocess.run(["ip", "-4", "-o", "addr", "show", ifname or "docker0"],
                        capture_output=True, text=True).stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", ip)
    return m.group(1) if m else None


def listening_ports(pid):
    """The TCP ports process pid listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def job_script(client_b64, repo_note):
    return r"""echo %s | base64 -d > /tmp/c.js
echo "%s url=$ACTIONS_CACHE_URL"
rc=0; out=$(node /tmp/c.js restore fleet-v1 deps) || rc=$?
echo "deps: $out"
[ $rc = 0 ] || exit $rc
if [ -f deps/data.bin ]; then echo "restored $(md5sum deps/data.bin | cut -c1-32)"; exit 0; fi
mkdir -p deps && head -c 1500000 /dev/urandom > deps/data.bin
echo "made $(md5sum deps/data.bin | cut -c1-32)"
node /tmp/c.js save fleet-v1 deps
""" % (client_b64, repo_note)


def field(rows, name):
    for x in rows:
        m = re.match(r"%s (\S+)$" % re.escape(name), x)
        if m:
            return m.group(1)
    return None


def main():
    image, err = lib.test_image("node")
    if image is None:
        print("SKIP: the node test image cannot be built: " + err.strip())
        return 0
    gw = gateway()
    if gw is None:
        print("SKIP: the Docker engine's default bridge has no IPv4 address on this host")
        return 0
    with open(os.path.join(lib.SRC, "tests", "e2e", "cache_client.js"), "rb") as f:
        client = base64.b64encode(f.read()).decode()
    tmp = tempfile.mkdtemp(prefix="runnerd-e2e-cache-fleet-")
    d = serve = None
    runners = []
    try:
        cdir = os.path.join(tmp, "cache")
        key = os.path.join(tmp, "fleet.key")
        serve_log = open(os.path.join(tmp, "serve.log"), "w")
        serve = subprocess.Popen([lib.RUNNERCTL, "cache", "serve", "--listen", gw + ":0",
                                  "--dir", cdir, "--key-file", key],
                                 stdout=subprocess.PIPE, stderr=serve_log, text=True)
        line = serve.stdout.readline()
        m = re.match(r"listening port=(\d+)", line)
        if not check("runnerctl cache serve listens on %s" % gw, m,
                     line + open(serve_log.name).read()):
            return 1
        url = "http://%s:%s/" % (gw, m.group(1))
        other_key = os.path.join(tmp, "other.key")
        fd = os.open(other_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (os.urandom(32).hex() + "\n").encode())
        os.close(fd)

        d = lib.Double(tmp)
        ports = {}
        for name, k in (("a", key), ("b", key), ("c", other_key)):
            r = lib.Runner(d, tmp, "fleet-" + name, image,
                           label="fleet-%s:docker://%s" % (name, image))
            ports[name] = lib.free_port()
            with open(r.config, "a") as f:
                f.write("  http: 127.0.0.1:%d\n  cache_dir: %s\n  cache:\n    external_url: %s\n"
                        "    key_file: %s\n" % (ports[name], os.path.join(r.dir, "cache"), url, k))
            r.start()
            runners.append(r)
        a, b, c = runners

        def run(label, repo):
            j = d.admin("enqueue", {"runsOn": ["fleet-" + label], "repo": repo,
                                    "steps": [{"name": "cache", "shell": "sh",
                                               "run": job_script(client, repo)}]})["jobId"]
            t = lib.final_task(d, j, 180)
            return t, lib.rows_of(t) if t else []

        t, rows = run("a", "acme/app")
        check("A: the job succeeds", t and t["status"] == "success", "\n".join(rows))
        check("A: the job's ACTIONS_CACHE_URL is the shared server's, its token masked",
              ("acme/app url=%s***/" % url) in rows, "\n".join(rows))
        check("A: acme/app misses", "deps: cache miss" in rows, "\n".join(rows))
        made = field(rows, "made")
        check("A: saves what it made",
              made and any(x.startswith("cache saved fleet-v1 (") for x in rows), "\n".join(rows))

        t, rows = run("b", "acme/app")
        check("B: the job succeeds", t and t["status"] == "success", "\n".join(rows))
        check("B: acme/app restores A's entry", "deps: cache hit fleet-v1" in rows, "\n".join(rows))
        check("B: the same bytes (MD5 %s)" % made, made and field(rows, "restored") == made,
              "\n".join(rows))

        t, rows = run("b", "acme/other")
        check("B: another repository misses", "deps: cache miss" in rows and
              field(rows, "restored") is None, "\n".join(rows))

        t, rows = run("c", "acme/app")
        check("C (another key): the job's client gets 401",
              any(x.startswith("deps: lookup: HTTP 401") for x in rows), "\n".join(rows))
        check("C: the job fails and restores nothing", t and t["status"] == "failure" and
              field(rows, "restored") is None and field(rows, "made") is None, "\n".join(rows))

        db = sqlite3.connect(os.path.join(cdir, "index.db"))
        entries = sorted(db.execute("SELECT repo, ref, key FROM cache_entries WHERE committed"))
        db.close()
        check("the shared server's index holds acme/app's and acme/other's entries only",
              entries == [("acme/app", "refs/heads/main", "fleet-v1"),
                          ("acme/other", "refs/heads/main", "fleet-v1")], str(entries))

        for name, r in (("A", a), ("B", b)):
            logs = r.log_text()
            check("%s: its log names the external server" % name,
                  ("cache: %s for jobs in containers, %s on the host" % (url, url)) in logs,
                  logs[-3000:])
            check("%s: listens on no port but its status endpoint's" % name,
                  listening_ports(r.proc.pid) == {ports[name.lower()]},
                  "%s vs %d" % (listening_ports(r.proc.pid), ports[name.lower()]))
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ports[name.lower()],
                                        timeout=10) as resp:
                metrics = resp.read().decode()
            check("%s: /metrics has no runnerd_cache_ lines (no server of its own)" % name,
                  "runnerd_cache_" not in metrics and "runnerd_" in metrics, metrics[-2000:])
            own = os.path.join(r.dir, "cache")
            check("%s: made no blob directory of its own" % name,
                  not os.path.exists(os.path.join(own, "actions-cache")),
                  str(os.listdir(own) if os.path.isdir(own) else []))
    finally:
        for r in runners:
            check("runnerd %s exits 0" % os.path.basename(r.dir), r.stop() == 0)
        if d:
            d.stop()
        if serve:
            serve.terminate()
            check("runnerctl cache serve exits 0 on SIGTERM", serve.wait(30) == 0)
        lib.remove_leftovers(tmp)
        if T.failures == 0 and not lib.failures:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    failed = T.failures + len(lib.failures)
    print("%d failed" % failed if failed else "e2e-cache-fleet: all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
