#!/usr/bin/env python3
"""runnerctl exec and the actions/cache server (README.md, "Cache"): the runnerd.cache keys and
the label setting `cache:` (bad values are FILE:LINE:COL errors); then, with the server built,
what every job gets: ACTIONS_CACHE_URL (ending in "/") that accepts a TCP connection from a
real job container on the shared isolated bridge, from one on a job network of its own (a
service), and from a host job (127.0.0.1); ACTIONS_RUNTIME_TOKEN masked in the output, one
token per job bound to the local repository and ref; nothing with --no-cache, for a label
whose settings say `cache: false`, or while another process holds the cache directory.
Without the server (daemon/cache/ not built yet) those checks are skipped, saying so."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402
T = lib.Tally()
check = T.check
ABSENT = "is not built into this program"


def run(tmp, wf, *args, home=None):
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write(wf)
    env = dict(os.environ, HOME=home or os.path.join(tmp, "home"))
    env.pop("XDG_CACHE_HOME", None)
    env.pop("RUNNERD_CACHE_DIR", None)
    p = subprocess.run([RUNNERCTL, "exec", "-C", tmp, *args, path], capture_output=True,
                       text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def claims(out, job):
    """The claims part of job's token, which its step printed (the token itself is masked)."""
    for line in out.splitlines():
        if line.startswith("[%s]   | claims=" % job):
            part = line.split("claims=", 1)[1].strip()
            try:
                return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            except ValueError:
                return None
    return None


# A step that shows what the job got and whether the URL's host and port accept a connection
# (busybox nc in containers; python3 on the host).
STEP = r"""
      - run: |
          echo "url=$ACTIONS_CACHE_URL"
          echo "token=$ACTIONS_RUNTIME_TOKEN"
          echo "claims=${ACTIONS_RUNTIME_TOKEN%%.*}"
          hp=${ACTIONS_CACHE_URL#http://}; hp=${hp%%/*}
          if [ -z "$ACTIONS_CACHE_URL" ]; then echo reach=none
          elif REACH; then echo reach=ok; else echo reach=fail; fi
"""
NC = 'nc -w 5 "${hp%:*}" "${hp#*:}" </dev/null'
PY = ('python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"'
      ' "${hp%:*}" "${hp#*:}"')

with tempfile.TemporaryDirectory() as tmp:
    # Configuration: every bad value names its place.
    bad = [
        ("runnerd:\n  cache:\n    max_size: lots\n", ":3:15: runnerd.cache.max_size"),
        ("runnerd:\n  cache:\n    max_age: 0s\n", ":3:14: runnerd.cache.max_age"),
        ("runnerd:\n  cache:\n    enabled: maybe\n", ":3:14: runnerd.cache.enabled"),
        ("runnerd:\n  cache:\n    external_url: ftp://x/\n    key_file: /k\n",
         ":3:19: runnerd.cache.external_url"),
        ("runnerd:\n  cache:\n    external_url: http://cache.lan:8088\n",
         ":3:5: runnerd.cache: external_url needs key_file"),
        ("runnerd:\n  cache:\n    sise: 1g\n", ":3:5: runnerd.cache: unknown key 'sise'"),
        ("runnerd:\n  labels:\n    bb: {cache: off}\n", ":3:17: runnerd.labels.bb.cache"),
    ]
    for text, want in bad:
        cfg = write(os.path.join(tmp, "bad.yaml"), text)
        rc, out, err = run(tmp, "on: push\njobs:\n  a:\n    runs-on: h\n    steps:\n"
                           "      - run: echo never\n", "-c", cfg, "-l", "h=host")
        check("config error " + want, rc == 2 and (cfg + want) in err and "never" not in out,
              "rc=%d %s" % (rc, err))
    good = write(os.path.join(tmp, "good.yaml"),
                 "runnerd:\n  cache:\n    enabled: true\n    max_size: 2g\n    max_age: 168h\n"
                 "    dir: %s/blobs\n    key_file: %s/k\n" % (tmp, tmp))
    rc, out, err = run(tmp, "on: push\njobs:\n  a:\n    runs-on: h\n    steps:\n"
                       "      - run: echo fine\n", "-c", good, "-l", "h=host")
    check("a good runnerd.cache section loads", rc == 0 and "[a]   | fine" in out, out + err)

    # The jobs.
    image, berr = lib.test_image()
    if image is None:
        print("FAIL building the busybox test image: " + berr)
        sys.exit(1)
    ctx_dir = os.path.join(tmp, "svc-image")
    os.mkdir(ctx_dir)
    write(os.path.join(ctx_dir, "Dockerfile"),
          "FROM %s\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n" % image)
    b = subprocess.run(["docker", "build", "-q", "-t", "runnerd-test/httpd:cache", ctx_dir],
                       capture_output=True, text=True)
    check("service image built offline", b.returncode == 0, b.stderr)
    wf = ("on: push\njobs:\n"
          "  iso:\n    runs-on: bb\n    steps:" + STEP.replace("REACH", NC) +
          "  svc:\n    runs-on: bb\n    services:\n      web:\n"
          "        image: runnerd-test/httpd:cache\n    steps:" + STEP.replace("REACH", NC) +
          "  host:\n    runs-on: h\n    steps:" + STEP.replace("REACH", PY))
    labels = ("-l", "bb=docker://" + image, "-l", "h=host")
    rc, out, err = run(tmp, wf, *labels)
    if ABSENT in out + err:
        print("SKIP the jobs' checks: the actions/cache server %s (daemon/cache/ has no "
              "implementation yet); runnerctl said: %s" % (ABSENT, (out + err).splitlines()[0]))
        print("%d failed" % T.failures if T.failures else "exec-cache: all checks passed")
        sys.exit(1 if T.failures else 0)
    check("three jobs ran", rc == 0, out + err)
    urls = {}
    for job, where in (("iso", "a container on the shared isolated bridge"),
                       ("svc", "a container on a job network of its own"),
                       ("host", "a host job")):
        line = [l for l in out.splitlines() if l.startswith("[%s]   | url=" % job)]
        urls[job] = line[0].split("url=", 1)[1] if line else ""
        check("%s gets ACTIONS_CACHE_URL ending in /" % where,
              urls[job].startswith("http://") and urls[job].endswith("/"), out)
        check("%s reaches it" % where, "[%s]   | reach=ok" % job in out, out + err)
        check("%s: the token is masked" % where, "[%s]   | token=***" % job in out, out)
        check("%s: the URL carries the token, masked" % where, urls[job].endswith("/***/"), out)
    check("containers use the bridge gateway, not loopback or 0.0.0.0",
          urls["iso"] == urls["svc"] and "127.0.0.1" not in urls["iso"]
          and "0.0.0.0" not in urls["iso"], str(urls))
    check("the host job uses 127.0.0.1 on the same port",
          urls["host"].startswith("http://127.0.0.1:")
          and urls["host"].rsplit(":", 1)[1] == urls["iso"].rsplit(":", 1)[1], str(urls))
    cs = {j: claims(out, j) for j in ("iso", "svc", "host")}
    check("each job's token names the local repository and ref",
          all(c and c.get("repo") == "local/" + os.path.basename(tmp)
              and c.get("ref", "").startswith("refs/") for c in cs.values()), str(cs))
    check("one token per job",
          len({json.dumps(c, sort_keys=True) for c in cs.values()}) == 3, str(cs))
    # Nothing listens on all addresses: the port is not open on the LAN address.
    port = int(urls["iso"].split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    lan = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    lan = [a for a in lan if not a.startswith("172.17.") and ":" not in a]
    if lan:
        import socket
        try:
            socket.create_connection((lan[0], port), 2).close()
            open_on_lan = True
        except OSError:
            open_on_lan = False
        check("the server is not reachable on the LAN address " + lan[0], not open_on_lan)

    # --no-cache, and a label whose settings say cache: false.
    rc, out, err = run(tmp, wf, "--no-cache", *labels)
    check("--no-cache: no variables", rc == 0 and out.count("| url=\n") == 3
          and "| reach=none" in out and "cache server" not in out, out + err)
    cfg = write(os.path.join(tmp, "nocache.yaml"),
                "runnerd:\n  labels:\n    bb: {cache: false}\n")
    rc, out, err = run(tmp, wf, "-c", cfg, *labels)
    check("label cache: false: its jobs get nothing",
          "[iso]   | url=\n" in out and "[svc]   | url=\n" in out, out + err)
    check("label cache: false: other labels still do", "[host]   | reach=ok" in out, out + err)

    # One server per blob directory: while another process holds it, this run goes without.
    import fcntl
    lockdir = os.path.join(tmp, "home", ".cache", "runnerd")
    with open(os.path.join(lockdir, "actions-cache.lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rc, out, err = run(tmp, "on: push\njobs:\n  host:\n    runs-on: h\n    steps:" +
                           STEP.replace("REACH", PY), "-l", "h=host")
    check("a blob directory in use by another process: said, and the job runs without",
          rc == 0 and "is in use by another runnerd or runnerctl exec" in err
          and "[host]   | reach=none" in out, out + err)

subprocess.run(["docker", "image", "rm", "-f", "runnerd-test/httpd:cache"], capture_output=True)
print("%d failed" % T.failures if T.failures else "exec-cache: all checks passed")
sys.exit(1 if T.failures else 0)
