#!/usr/bin/env python3
"""Hostile workflows and faults that try to make a job impossible to stop (issue 13, items 13-15),
against the real runnerctl/runnerd binaries, the Gitea double and the real Docker engine.

- An agent that never answers (runnerd.agent / RUNNERD_AGENT set to a program that only sleeps,
  as a broken image or entrypoint would): the job fails at the hello deadline; SIGTERM, a second
  SIGINT, Gitea's cancel, runnerd's drain and its second SIGTERM end it within seconds.
- A step that ignores SIGTERM: cancel and force end it within seconds; nothing is left behind.
- A step that forges a frame header on the agent's stdout (/proc/1/fd/1, /proc/1/fd/0,
  /proc/self/../1, the journal, any inherited descriptor): it cannot, and the job goes on.
- `docker pause` of the job container: a step timeout, a cancel and a force still end the job in
  bounded time and the paused container is removed.
- A job cancelled on the server while runnerd was down (kill -9): after the restart its next step
  does not start.

Every wait is bounded: a run that would hang fails by its own timeout. Run one scenario with
`stop.py NAME`."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
RUNNERCTL = os.environ.get("RUNNERCTL", os.path.join(SRC, "_build", "runnerctl"))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import lib as e2e  # noqa: E402  (the Gitea double and runnerd helpers)

failures = []
HOST = os.uname().nodename


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond or not detail else ": " + str(detail)[-1500:]),
          flush=True)
    if not cond:
        failures.append(name)
    return cond


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def owned(owner):
    """Containers, networks and volumes a runnerctl/runnerd (by owner label) left."""
    out = []
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out += docker(*kind, "-q", "--filter", "label=io.runnerd.owner=%s" % owner).stdout.split()
    return out


def remove_owned(owner):
    for i in docker("ps", "-aq", "--filter", "label=io.runnerd.owner=%s" % owner).stdout.split():
        docker("rm", "-f", i)
    for kind in ("network", "volume"):
        for i in docker(kind, "ls", "-q", "--filter", "label=io.runnerd.owner=%s" % owner).stdout.split():
            docker(kind, "rm", "-f", i) if kind == "volume" else docker(kind, "rm", i)


def job_container(owner, timeout=60):
    """The running job container of a runnerctl/runnerd, once it exists."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ids = docker("ps", "-q", "--filter", "label=io.runnerd.owner=%s" % owner,
                     "--filter", "label=io.runnerd.role=job").stdout.split()
        if ids:
            return ids[0]
        time.sleep(0.2)
    return None


class Exec:
    """runnerctl exec of one workflow, in the background; output collected in a file."""

    def __init__(self, tmp, name, wf, image, env=None, args=()):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        path = os.path.join(self.dir, "wf.yml")
        with open(path, "w") as f:
            f.write(wf)
        self.outp = os.path.join(self.dir, "out.txt")
        self.out = open(self.outp, "w")
        self.proc = subprocess.Popen([RUNNERCTL, "exec", "-C", self.dir, "-l", "builder=docker://" + image,
                                      *args, path], stdout=self.out, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        self.owner = "%s:%d" % (HOST, self.proc.pid)
        self.t0 = time.monotonic()

    def text(self):
        with open(self.outp, errors="replace") as f:
            return f.read()

    def wait_text(self, what, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if what in self.text():
                return True
            time.sleep(0.2)
        return what in self.text()

    def wait(self, timeout):
        """Exit status, or None when it did not exit in time (then it is killed)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.out.close()
        return rc

    def left(self):
        # The teardown of a run that ended is over; give the engine a moment for removals.
        end = time.monotonic() + 10
        while owned(self.owner) and time.monotonic() < end:
            time.sleep(0.5)
        left = owned(self.owner)
        remove_owned(self.owner)
        return left


def hang_agent(tmp):
    """An "agent" that never answers and ignores SIGTERM (PID 1 without handlers)."""
    p = os.path.join(tmp, "hang-agent")
    with open(p, "w") as f:
        f.write("#!/bin/sh\nexec sleep 100000\n")
    os.chmod(p, 0o755)
    return p


ONE_STEP = """
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - run: echo never
"""


# ---------------------------------------------------------------- runnerctl: the agent never answers

def sc_hello_deadline(tmp, image):
    x = Exec(tmp, "hello", ONE_STEP, image, env={"RUNNERD_AGENT": hang_agent(tmp)})
    rc = x.wait(120)
    took = time.monotonic() - x.t0
    check("hello: runnerctl ends on its own when the agent never answers", rc == 1, "rc=%s took %.0fs" % (rc, took))
    check("hello: it says the agent did not answer", "did not answer within 30 s" in x.text(), x.text())
    check("hello: within the deadline (%.0fs)" % took, took < 75)
    left = x.left()
    check("hello: nothing left behind", not left, left)


def signal_during_hello(tmp, image, name, sigs):
    x = Exec(tmp, name, ONE_STEP, image, env={"RUNNERD_AGENT": hang_agent(tmp)})
    if not check("%s: the job container starts" % name, job_container(x.owner) is not None, x.text()):
        x.wait(5)
        x.left()
        return
    time.sleep(1)
    t0 = time.monotonic()
    for s in sigs:
        x.proc.send_signal(s)
        time.sleep(0.3)
    rc = x.wait(25)
    took = time.monotonic() - t0
    check("%s: runnerctl exits within seconds of %s while waiting for the hello (%.1fs)" %
          (name, "+".join(signal.Signals(s).name for s in sigs), took), rc is not None and took < 20,
          "rc=%s %s" % (rc, x.text()))
    check("%s: exit status 1" % name, rc == 1, rc)
    left = x.left()
    check("%s: the job container is removed" % name, not left, left)


def sc_term_hello(tmp, image):
    signal_during_hello(tmp, image, "term-hello", [signal.SIGTERM])


def sc_int2_hello(tmp, image):
    signal_during_hello(tmp, image, "int2-hello", [signal.SIGINT, signal.SIGINT])


def sc_term_setup(tmp, image):
    """A service whose health check never passes holds the setup: SIGTERM ends it at once."""
    ctx = os.path.join(tmp, "sleeper")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write('FROM %s\nLABEL io.runnerd.test=hostile-stop\nCMD ["sleep", "100000"]\n' % image)
    tag = "runnerd-test/stop-sleeper:%d" % os.getpid()
    b = docker("build", "-q", "-t", tag, ctx)
    if not check("term-setup: a service image that never gets healthy", b.returncode == 0, b.stderr):
        return
    wf = """
on: push
jobs:
  j:
    runs-on: builder
    services:
      sick:
        image: %s
        options: --health-cmd false --health-interval 1s --health-retries 1000
    steps:
      - run: echo never
""" % tag
    try:
        setup_signal(tmp, image, wf, tag)
    finally:
        docker("rmi", "-f", tag)


def setup_signal(tmp, image, wf, tag):
    x = Exec(tmp, "term-setup", wf, image)
    end = time.monotonic() + 60
    while time.monotonic() < end and not docker("ps", "-q", "--filter", "ancestor=" + tag,
                                                 "--filter", "label=io.runnerd.owner=" + x.owner).stdout.strip():
        time.sleep(0.3)
    time.sleep(2)
    t0 = time.monotonic()
    x.proc.send_signal(signal.SIGTERM)
    rc = x.wait(30)
    took = time.monotonic() - t0
    check("term-setup: SIGTERM during the setup ends runnerctl within seconds (%.1fs)" % took,
          rc is not None and took < 20, "rc=%s %s" % (rc, x.text()))
    left = x.left()
    check("term-setup: nothing left behind", not left, left)


# ---------------------------------------------------------------- runnerctl: a step that will not stop

STUBBORN = """
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - run: |
          trap '' TERM INT HUP
          echo stubborn-started
          while :; do sleep 1; done
      - if: always()
        run: |
          trap '' TERM INT HUP
          echo cleanup-started
          while :; do sleep 1; done
"""


def sc_force_step(tmp, image):
    x = Exec(tmp, "force-step", STUBBORN, image)
    if not check("force-step: the stubborn step starts", x.wait_text("stubborn-started", 90), x.text()):
        x.wait(5)
        x.left()
        return
    t0 = time.monotonic()
    x.proc.send_signal(signal.SIGINT)
    # The first step is killed after its grace; the always() step starts and ignores TERM too.
    x.wait_text("cleanup-started", 30)
    x.proc.send_signal(signal.SIGINT)
    rc = x.wait(30)
    took = time.monotonic() - t0
    check("force-step: a second SIGINT ends runnerctl within seconds (%.1fs)" % took,
          rc is not None and took < 45, "rc=%s %s" % (rc, x.text()))
    check("force-step: exit status 1", rc == 1, rc)
    left = x.left()
    check("force-step: the job container is removed", not left, left)


def sc_force_teardown(tmp, image):
    """The engine hangs while the job container is removed: a forced stop still ends runnerctl
    in bounded time, and the container it leaves is removed by the next run."""
    sock = os.path.join(tmp, "stall.sock")
    flag = os.path.join(tmp, "stall.flag")
    open(flag, "w").close()
    proxy = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "servers", "engineproxy.py"), sock,
                              "/var/run/docker.sock", flag, "stall"], stdout=subprocess.PIPE, text=True)
    try:
        check("force-teardown: the stalling engine proxy starts", proxy.stdout.readline().strip() == "ready")
        wf = """
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - run: echo step-done
"""
        x = Exec(tmp, "force-teardown", wf, image, env={"DOCKER_HOST": "unix://" + sock})
        if not check("force-teardown: the step runs", x.wait_text("step-done", 90), x.text()):
            x.wait(5)
            x.left()
            return
        time.sleep(3)  # the job is over; its container's removal hangs
        t0 = time.monotonic()
        x.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        x.proc.send_signal(signal.SIGINT)
        rc = x.wait(45)
        took = time.monotonic() - t0
        check("force-teardown: a forced stop ends runnerctl although the engine hangs (%.1fs)" % took,
              rc is not None and took < 25, "rc=%s %s" % (rc, x.text()))
        check("force-teardown: it says what it leaves", "leaving them for the next run" in x.text(), x.text())
        owner = x.owner
        left = owned(owner)
        # The next run (the engine answering again) removes what the forced one left.
        os.unlink(flag)
        y = Exec(tmp, "force-teardown-next", wf, image)
        t1 = time.monotonic()
        y.wait(90)
        print("  (the next run took %.1fs)" % (time.monotonic() - t1), flush=True)
        check("force-teardown: the next run removes the container left behind",
              left and not owned(owner) and "left by an earlier run" in y.text(), "%s %s" % (left, y.text()))
        remove_owned(owner)
        y.left()
    finally:
        proxy.kill()
        proxy.wait()


# ---------------------------------------------------------------- forged frames

FORGE = r"""
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - name: forge
        run: |
          # A valid 28-byte header (type OUTPUT, good header CRC) announcing an 8 MiB payload.
          hdr='HEADER'
          [ -e /var/run/act/.runner-journal ] && echo "JOURNAL-NAMED" || echo "journal has no name"
          for t in /proc/1/fd/1 /proc/1/fd/0 /proc/1/fd/2 /proc/self/../1/fd/1 /proc/1/root/proc/1/fd/1 /proc/1/fd/3; do
            if printf "$hdr" > "$t" 2>/dev/null; then echo "WROTE $t"; else echo "refused $t"; fi
          done
          readlink /proc/1/fd/1 >/dev/null 2>&1 && echo "READLINK-OK" || echo "refused readlink"
          ls -l /proc/self/fd/ | sed -n 's/.* \([0-9][0-9]*\) -> \(.*\)/FD \1 \2/p'
      - run: echo second-step-ran
"""


def forged_header():
    """The frame header a step forges, as printf octal escapes: type OUTPUT, payload 8 MiB (the
    most a receiver accepts, so it waits for all of it), and a header CRC that matches."""
    h = bytes([0xE7, 0x52, 0x41, 0x1A, 1, 0x83, 0, 0]) + (8 << 20).to_bytes(4, "big") + \
        (0).to_bytes(8, "big") + (0).to_bytes(4, "big")
    h += zlib.crc32(h).to_bytes(4, "big")
    return "".join("\\%03o" % c for c in h)


def inherited(out):
    """Descriptors ls held beyond 0, 1, 2 and its own directory: what the step inherited."""
    bad = []
    for line in out.splitlines():
        i = line.find("FD ")
        if i < 0:
            continue
        parts = line[i:].split(" ", 2)
        if len(parts) == 3 and parts[1] not in ("0", "1", "2") and "/proc/" not in parts[2]:
            bad.append(line[i:])
    return bad


def sc_forge(tmp, image):
    x = Exec(tmp, "forge", FORGE.replace("HEADER", forged_header()), image)
    rc = x.wait(60)
    out = x.text()
    check("forge: the job ends (no stalled stream)", rc is not None, out)
    check("forge: the job succeeds", rc == 0, out)
    check("forge: no forged write reached the agent", "WROTE" not in out and "refused /proc/1/fd/1" in out, out)
    check("forge: the agent's descriptors cannot be followed", "READLINK-OK" not in out, out)
    check("forge: the journal has no name a step could write", "JOURNAL-NAMED" not in out, out)
    check("forge: the step holds no inherited descriptor", not inherited(out) and "FD 0" in out, out)
    check("forge: the next step ran", "second-step-ran" in out, out)
    left = x.left()
    check("forge: nothing left behind", not left, left)


# ---------------------------------------------------------------- docker pause

def pause_when(x, what):
    if not x.wait_text(what, 90):
        return None
    c = job_container(x.owner, 10)
    if c:
        docker("pause", c)
    return c


def sc_pause_timeout(tmp, image):
    wf = """
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - timeout-minutes: 0.05
        run: echo pause-me; sleep 600
      - run: echo after
"""
    x = Exec(tmp, "pause-timeout", wf, image)
    c = pause_when(x, "pause-me")
    if not check("pause-timeout: the job container is paused", c is not None, x.text()):
        x.wait(5)
        x.left()
        return
    t0 = time.monotonic()
    rc = x.wait(60)
    took = time.monotonic() - t0
    check("pause-timeout: the step timeout ends the job although the container is paused (%.1fs)" % took,
          rc == 1, "rc=%s %s" % (rc, x.text()))
    check("pause-timeout: it says the container does not answer", "does not answer" in x.text(), x.text())
    left = x.left()
    check("pause-timeout: the paused container is removed", not left, left)


def sc_pause_cancel(tmp, image):
    wf = """
on: push
jobs:
  j:
    runs-on: builder
    steps:
      - run: echo pause-me; sleep 600
"""
    x = Exec(tmp, "pause-cancel", wf, image)
    c = pause_when(x, "pause-me")
    if not check("pause-cancel: the job container is paused", c is not None, x.text()):
        x.wait(5)
        x.left()
        return
    t0 = time.monotonic()
    x.proc.send_signal(signal.SIGINT)
    rc = x.wait(40)
    took = time.monotonic() - t0
    check("pause-cancel: Ctrl-C ends the job although the container is paused (%.1fs)" % took,
          rc == 1 and took < 30, "rc=%s %s" % (rc, x.text()))
    left = x.left()
    check("pause-cancel: the paused container is removed", not left, left)

    x = Exec(tmp, "pause-force", wf, image)
    c = pause_when(x, "pause-me")
    if c is None:
        x.wait(5)
        x.left()
        return
    t0 = time.monotonic()
    x.proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    x.proc.send_signal(signal.SIGINT)
    rc = x.wait(30)
    took = time.monotonic() - t0
    check("pause-force: a second Ctrl-C ends it within seconds (%.1fs)" % took,
          rc == 1 and took < 15, "rc=%s %s" % (rc, x.text()))
    left = x.left()
    check("pause-force: the paused container is removed", not left, left)


# ---------------------------------------------------------------- runnerd

class Runnerd(e2e.Runner):
    def __init__(self, *a, env=None, **kw):
        self.env = env
        super().__init__(*a, **kw)

    def start(self):
        self.logs += 1
        self.logf = open(os.path.join(self.dir, "runnerd.%d.log" % self.logs), "w")
        self.proc = subprocess.Popen([e2e.RUNNERD, "-c", self.config, "--state", self.state],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(self.env or {})))


def task_started(d, job, timeout=60):
    return e2e.wait_until(lambda: (lambda t: t if t and t["status"] == "running" else None)(d.task_of_job(job)),
                          timeout, "job %s to be taken" % job)


def sc_d_cancel_hello(d, tmp, image):
    r = Runnerd(d, tmp, "d-cancel-hello", image, env={"RUNNERD_AGENT": hang_agent(tmp)})
    r.start()
    job = e2e.enqueue(d, [{"name": "one", "run": "echo never"}])
    t = task_started(d, job)
    if not check("d-cancel-hello: the task is taken", t is not None and job_container(r.owner) is not None):
        r.stop()
        return
    time.sleep(1)
    t0 = time.monotonic()
    d.admin("cancel", {"taskId": t["id"]})
    gone = e2e.wait_until(lambda: not owned(r.owner) or None, 25, "the job container removed after the cancel")
    took = time.monotonic() - t0
    check("d-cancel-hello: Gitea's cancel ends a job whose agent never answered (%.1fs)" % took,
          gone is not None and took < 25, r.log_text()[-3000:])
    t0 = time.monotonic()
    r.signal(signal.SIGTERM)
    rc = r.wait(30)
    check("d-cancel-hello: runnerd then drains and exits 0 (%.1fs)" % (time.monotonic() - t0), rc == 0, rc)
    remove_owned(r.owner)


def sc_d_term2(d, tmp, image):
    r = Runnerd(d, tmp, "d-term2", image, env={"RUNNERD_AGENT": hang_agent(tmp)})
    r.start()
    job = e2e.enqueue(d, [{"name": "one", "run": "echo never"}])
    t = task_started(d, job)
    if not check("d-term2: the task is taken", t is not None and job_container(r.owner) is not None):
        r.stop()
        return
    time.sleep(1)
    t0 = time.monotonic()
    r.signal(signal.SIGTERM)   # drain: shutdown_timeout is 30 s; the job would wait for the hello
    time.sleep(2)
    r.signal(signal.SIGTERM)   # force
    rc = r.wait(30)
    took = time.monotonic() - t0
    check("d-term2: a second SIGTERM ends runnerd within seconds while the agent never answers (%.1fs)" % took,
          rc is not None and took < 25, r.log_text()[-3000:])
    left = e2e.wait_until(lambda: not owned(r.owner) or None, 10, "no leftovers")
    check("d-term2: the job container is removed", left is not None, owned(r.owner))
    tt = e2e.wait_until(lambda: (lambda t: t if t and t["status"] != "running" else None)(d.task_of_job(job)), 5,
                        "the task's final state")
    check("d-term2: the task is reported cancelled", tt is not None and tt["status"] == "cancelled",
          tt and tt["status"])
    remove_owned(r.owner)


def sc_d_drain_stubborn(d, tmp, image):
    r = Runnerd(d, tmp, "d-drain", image, extra="")
    with open(r.config, "w") as f:
        f.write("runner:\n  capacity: 1\n  fetch_interval: 1s\n  shutdown_timeout: 2s\n"
                "runnerd:\n  fetch_interval_max: 2s\n")
    r.start()
    job = e2e.enqueue(d, [{"name": "stubborn", "run": "trap '' TERM INT HUP; echo stubborn-started; "
                                                      "while :; do sleep 1; done"}])
    ok = e2e.wait_until(lambda: (lambda t: t and "stubborn-started" in e2e.rows_of(t))(d.task_of_job(job)), 60,
                        "the stubborn step to start")
    if not check("d-drain: the stubborn step starts", ok is not None):
        r.stop()
        return
    c = job_container(r.owner, 10)
    if c:
        docker("pause", c)  # the agent cannot even forward the cancel
    t0 = time.monotonic()
    r.signal(signal.SIGTERM)
    rc = r.wait(60)
    took = time.monotonic() - t0
    check("d-drain: SIGTERM's drain ends a paused, stubborn job in bounded time (%.1fs)" % took,
          rc == 0 and took < 45, "rc=%s %s" % (rc, r.log_text()[-3000:]))
    left = e2e.wait_until(lambda: not owned(r.owner) or None, 10, "no leftovers")
    check("d-drain: the paused container is removed", left is not None, owned(r.owner))
    remove_owned(r.owner)


def sc_d_cancel_while_down(shared, tmp, image):
    # A double of its own: its outage must not touch the other scenarios' runners.
    ddir = os.path.join(tmp, "d-down-double")
    os.makedirs(ddir)
    d = e2e.Double(ddir)
    try:
        cancel_while_down(d, tmp, image)
    finally:
        d.stop()


def cancel_while_down(d, tmp, image):
    r = Runnerd(d, tmp, "d-down", image)
    r.start()
    job = e2e.enqueue(d, [{"name": "one", "run": "echo one-started; sleep 8; echo one-done"},
                          {"name": "two", "run": "echo second-step-ran"}])
    ok = e2e.wait_until(lambda: (lambda t: t and "one-started" in e2e.rows_of(t))(d.task_of_job(job)), 60,
                        "the first step to start")
    if not check("d-down: the first step starts", ok is not None):
        r.stop()
        return
    r.proc.kill()
    r.wait(10)
    t = d.task_of_job(job)
    d.admin("cancel", {"taskId": t["id"]})
    time.sleep(10)  # the first step ends meanwhile, inside the container
    # The server is unreachable as runnerd comes back: the job must not go on before it
    # has heard from the server.
    d.admin("outage", {"seconds": 12})
    r.start()
    gone = e2e.wait_until(lambda: not owned(r.owner) or None, 90, "the job to end after the restart")
    time.sleep(2)
    rc = r.stop()
    # What the job printed, from runnerd's own store (the server takes no rows once final).
    logs = subprocess.run([RUNNERCTL, "logs", str(t["id"]), "--state", r.state], capture_output=True,
                          text=True, timeout=30)
    check("d-down: the task's log is readable", logs.returncode == 0 and "one-started" in logs.stdout,
          logs.stdout + logs.stderr)
    check("d-down: after the restart the cancelled job does not start its next step",
          gone is not None and "second-step-ran" not in logs.stdout, logs.stdout[-1500:])
    check("d-down: runnerd exits 0", rc == 0, rc)
    remove_owned(r.owner)


EXEC_SCENARIOS = [("hello", sc_hello_deadline), ("term-hello", sc_term_hello), ("int2-hello", sc_int2_hello),
                  ("term-setup", sc_term_setup), ("force-step", sc_force_step),
                  ("force-teardown", sc_force_teardown), ("forge", sc_forge),
                  ("pause-timeout", sc_pause_timeout), ("pause-cancel", sc_pause_cancel)]
DAEMON_SCENARIOS = [("d-cancel-hello", sc_d_cancel_hello), ("d-term2", sc_d_term2),
                    ("d-drain", sc_d_drain_stubborn), ("d-down", sc_d_cancel_while_down)]


def main():
    only = sys.argv[1:]
    image, err = e2e.test_image()
    if image is None:
        print("FAIL building the test image:", err)
        return 1
    tmp = tempfile.mkdtemp(prefix="runnerd-hostile-stop-")
    d = None
    try:
        for name, fn in EXEC_SCENARIOS:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                fn(tmp, image)
            except Exception as ex:  # a broken scenario is a failure, not a crash of the suite
                check("%s: %r" % (name, ex), False)
            print("  %s: %.1fs" % (name, time.monotonic() - t0), flush=True)
        for name, fn in DAEMON_SCENARIOS:
            if only and name not in only:
                continue
            if d is None:
                d = e2e.Double(tmp)
            before = len(e2e.failures)
            t0 = time.monotonic()
            try:
                fn(d, tmp, image)
            except Exception as ex:
                check("%s: %r" % (name, ex), False)
            for f in e2e.failures[before:]:
                check("%s: %s" % (name, f), False)
            print("  %s: %.1fs" % (name, time.monotonic() - t0), flush=True)
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
