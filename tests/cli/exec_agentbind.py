#!/usr/bin/env python3
"""runnerctl exec on the busybox docker label with a local engine: runner-agent is a read-only
bind (no copy through the archive call), which the job cannot overwrite, and the workflow and
workspace directories are there, writable. When the engine cannot bind it (the host side in a
container of its own: tests/servers/engineproxy.py in `nobind` mode points the bind at a
missing path, and the real engine refuses the create), the container is created again with the
agent copied in, and the job runs the same. Nothing is left behind either way."""
import os
import subprocess
import sys
import tempfile

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image)
T = lib.Tally()
check = T.check

IMAGE, err = lib.test_image()
if IMAGE is None:
    print("FAIL building the busybox test image: " + err)
    sys.exit(1)

WF = r"""
on: push
jobs:
  box:
    runs-on: builder
    steps:
      - run: |
          echo "mounted=$(grep -c ' /.runner/agent ' /proc/self/mountinfo)"
          { echo x > /.runner/agent; } 2>/dev/null && echo "agent overwritten" || echo "agent kept"
          ls -ld /var/run/act/workflow /workspace | cut -c1-10 | tr '\n' ' '; echo
          touch /workspace/f && echo "workspace writable"
"""


def run(tmp, docker_host):
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write(WF)
    env = dict(os.environ, XDG_RUNTIME_DIR=tmp)
    env.pop("RUNNERD_AGENT_CHANNEL", None)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    p = subprocess.run([RUNNERCTL, "exec", "-C", tmp, "-l", "builder=docker://" + IMAGE, path],
                       capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr


def common(name, rc, out, err):
    check("%s: runnerctl exits 0" % name, rc == 0, "%s %s %s" % (rc, out[-800:], err[-500:]))
    check("%s: the job cannot overwrite the agent" % name,
          "agent kept" in out and "agent overwritten" not in out, out[-800:])
    check("%s: the workflow and workspace directories are 0777" % name,
          "drwxrwxrwx drwxrwxrwx" in out, out[-800:])
    check("%s: the workspace is writable" % name, "workspace writable" in out)


with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o700)
    rc, out, err = run(tmp, None)
    common("bound", rc, out, err)
    check("bound: /.runner/agent is a mount (the bind)", "mounted=1" in out, out[-800:])
    check("bound: no copy line", "runner-agent is copied in" not in out)

with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o700)
    sock = os.path.join(tmp, "proxy.sock")
    record = os.path.join(tmp, "binds")
    proxy = subprocess.Popen([sys.executable, os.path.join(SRCDIR, "tests", "servers",
                                                           "engineproxy.py"),
                              sock, "/var/run/docker.sock", record, "nobind"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        check("the engine proxy starts", proxy.stdout.readline().strip() == "ready")
        rc, out, err = run(tmp, "unix://" + sock)
        common("refused bind", rc, out, err)
        n = open(record).read().count("bind") if os.path.exists(record) else 0
        check("refused bind: the create with the bind was refused, once", n == 1, str(n))
        check("refused bind: the job says the agent is copied in",
              "runner-agent is copied in (the engine cannot bind" in out, out[-800:])
        check("refused bind: /.runner/agent is the copy, no mount", "mounted=0" in out,
              out[-800:])
        check("refused bind: the job container is gone",
              "removed container" in out, out[-800:])
    finally:
        proxy.kill()
        proxy.wait()

sys.exit(1 if T.failures else 0)
