#!/usr/bin/env python3
"""End-to-end tests of `runnerctl restart` and runnerd's pid file (issue 4): the real `runnerctl`
and `runnerd` against the Gitea double and the real Docker engine.

There is no systemd here, so runnerd is started with $INVOCATION_ID set where a scenario plays
systemd (runnerctl tells a systemd-run runnerd by it), and the test starts the new runnerd
itself once the old one has exited with 75, as the unit's RestartForceExitStatus=75 would.

Scenarios:
  restart    a long task runs; `runnerctl restart` detaches runnerd (exit status 75, the job
             container keeps running), waits for the new runnerd and reports "runnerd
             restarted: pid OLD -> NEW, 1 job(s) left running for reattach"; the task
             completes with every log row exactly once; the pid file names the new runnerd;
             the job started on the agent's fast channel and went on over the attach stream
  second     a second runnerd on the same state database is refused (exit status 2, naming
             the running one's pid); a pid file left by a killed runnerd does not stop the next
  plain      not under systemd: runnerctl says nothing will start runnerd again (exit 0, old
             runnerd exit 75); --drain under systemd is refused in favour of systemctl;
             --drain otherwise stops runnerd with SIGTERM (exit 0); -c CONFIG finds the state
  nodaemon   no runnerd (never started, or stopped): exit status 1 with a clear message; bad
             usage: exit status 2

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `restart.py NAME...`."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402  (the Gitea double wrapper, Runner and helpers)

check, wait_until, rows_of, step_rows = base.check, base.wait_until, base.rows_of, base.step_rows
RUNNERCTL, RUNNERD = base.RUNNERCTL, base.RUNNERD
LIVE = []  # processes a scenario started: killed after it, however it ended


class Runner(base.Runner):
    """lib.py's Runner, started as systemd would (INVOCATION_ID set) or from a shell."""
    live = LIVE

    def start(self, systemd=False):
        self.env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM")}
        if systemd:
            self.env["INVOCATION_ID"] = "0123456789abcdef0123456789abcdef"
        super().start()

    def pidfile(self):
        return os.path.realpath(self.state) + ".pid"

    def ready(self):
        """Waits until this runnerd holds the pid file (it wrote its pid there)."""
        pid = str(self.proc.pid)
        return wait_until(lambda: os.path.exists(self.pidfile()) and
                          open(self.pidfile()).read().strip() == pid, 30,
                          "runnerd %s to write its pid file" % pid)


def ctl(*args, timeout=90):
    return subprocess.run([RUNNERCTL, "restart"] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def job_containers(r):
    return subprocess.run(["docker", "ps", "-q", "--filter", "label=%s=%s" % (base.OWNER_LABEL, r.owner),
                           "--filter", "label=io.runnerd.role=job"], capture_output=True, text=True).stdout.split()


# ---------------------------------------------------------------- scenarios

def sc_restart(d, tmp, image):
    r = Runner(d, tmp, "restart", image)
    r.start(systemd=True)
    r.ready()
    n = 30
    job = base.enqueue(d, [{"name": "first", "run": "echo first"},
                           {"name": "ticks", "run": "echo start >> starts; for i in $(seq 1 %d); do echo t $i; sleep 0.3; done" % n},
                           {"name": "after", "run": "echo starts=$(wc -l < starts)"}])
    wait_until(lambda: (lambda t: t and "t 3" in rows_of(t))(d.task_of_job(job)), 60, "the long step to run")
    old = r.proc.pid
    p = subprocess.Popen([RUNNERCTL, "restart", "--state", r.state, "--wait", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LIVE.append(p)
    rc = r.wait(30)
    check(rc == 75, "restart: the old runnerd exits with 75 (detached for a restart), got %s" % rc)
    check(len(job_containers(r)) == 1, "restart: the job container keeps running while runnerd is away")
    check(p.poll() is None, "restart: runnerctl waits for the new runnerd (systemd restarts it)")
    time.sleep(1)  # RestartSec= would pass here
    r.start(systemd=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    want = "runnerd restarted: pid %d -> %d, 1 job(s) left running for reattach\n" % (old, r.proc.pid)
    check(p.returncode == 0 and out == want,
          "restart: runnerctl reports the new pid: %s %r %r (want %r)" % (p.returncode, out, err, want))
    r.ready()
    t = base.final_task(d, job, 90)
    if t is None:
        return
    check(t["status"] == "success", "restart: task %s" % t["status"])
    check(step_rows(t, 1) == ["t %d" % i for i in range(1, n + 1)],
          "restart: every row of the running step exactly once, in order: %s" % step_rows(t, 1)[:40])
    check(step_rows(t, 2) == ["starts=1"], "restart: no step ran twice: %s" % step_rows(t, 2))
    check(rows_of(t).count("first") == 1, "restart: the first step's row once")
    check(any("(the fast channel)" in row for row in rows_of(t)),
          "restart: the job started on the fast channel (then reattached over attach): %s" % rows_of(t)[:8])
    check(len(rows_of(t)) == t["logLength"], "restart: every row stored once")
    base.check_no_leftovers(r, "restart")
    check(r.stop() == 0, "restart: runnerd exits 0")


def sc_second(d, tmp, image):
    r = Runner(d, tmp, "second", image)
    r.start()
    r.ready()
    p = subprocess.run([RUNNERD, "-c", r.config, "--state", r.state], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "another runnerd (pid %d) uses this state database" % r.proc.pid in p.stderr
          and r.state in p.stderr,
          "second: a second runnerd on the same state is refused: %s %r" % (p.returncode, p.stderr))
    check(r.proc.poll() is None, "second: the first runnerd keeps running")
    check(open(r.pidfile()).read() == "%d\n" % r.proc.pid, "second: the pid file still names the first")
    # A crashed runnerd leaves its pid file behind: stale, not locked, and no obstacle.
    r.proc.kill()
    r.wait(10)
    check(os.path.exists(r.pidfile()), "second: a killed runnerd leaves its pid file")
    p = ctl("--state", r.state)
    check(p.returncode == 1 and "no runnerd is running on %s" % r.state in p.stderr,
          "second: a stale pid file is no runnerd: %s %r" % (p.returncode, p.stderr))
    r.start()
    r.ready()
    check(r.proc.poll() is None, "second: runnerd starts over a stale pid file")
    check(r.stop() == 0, "second: runnerd exits 0")


def sc_plain(d, tmp, image):
    r = Runner(d, tmp, "plain", image)
    ctlcfg = os.path.join(r.dir, "ctl.yaml")
    with open(ctlcfg, "w") as f:
        f.write("runnerd:\n  state_file: %s\n" % r.state)
    # Not under systemd: runnerd detaches, and runnerctl says who must start it again.
    r.start()
    r.ready()
    old = r.proc.pid
    p = ctl("-c", ctlcfg, "--wait", "30")
    rc = r.wait(30)
    check(rc == 75, "plain: runnerd exits with 75, got %s" % rc)
    check(p.returncode == 0 and ("runnerd (pid %d) detached and exited for a restart, 0 job(s) left running "
                                 "for reattach; it does not run under systemd, so nothing starts it again" % old)
          in p.stdout, "plain: runnerctl says nothing restarts it: %s %r %r" % (p.returncode, p.stdout, p.stderr))
    # --drain under systemd: refused, runnerd untouched.
    r.start(systemd=True)
    r.ready()
    p = ctl("--state", r.state, "--drain")
    check(p.returncode == 1 and "systemctl restart" in p.stderr and "runs under systemd" in p.stderr,
          "plain: --drain under systemd is refused: %s %r" % (p.returncode, p.stderr))
    time.sleep(0.5)
    check(r.proc.poll() is None, "plain: the refused --drain left runnerd running")
    r.signal(signal.SIGTERM)
    check(r.wait(30) == 0, "plain: runnerd exits 0 on SIGTERM")
    # --drain otherwise: SIGTERM, runnerd drains and exits 0.
    r.start()
    r.ready()
    old = r.proc.pid
    env = dict(os.environ, RUNNERD_STATE=r.state)
    p = subprocess.run([RUNNERCTL, "restart", "--drain"], capture_output=True, text=True, timeout=90, env=env)
    rc = r.wait(30)
    check(rc == 0, "plain: --drain stops runnerd with SIGTERM (exit 0), got %s" % rc)
    check(p.returncode == 0 and "runnerd (pid %d) stopped" % old in p.stdout and "start runnerd" in p.stdout,
          "plain: --drain reports the stop: %s %r %r" % (p.returncode, p.stdout, p.stderr))


def sc_nodaemon(d, tmp, image):
    r = Runner(d, tmp, "nodaemon", image)
    p = ctl("--state", r.state)
    check(p.returncode == 1 and "runnerctl restart: no runnerd is running on %s" % r.state in p.stderr,
          "nodaemon: never started: %s %r" % (p.returncode, p.stderr))
    missing = os.path.join(tmp, "no-such-dir", "state.db")
    p = ctl("--state", missing)
    check(p.returncode == 1 and "no runnerd is running on %s" % missing in p.stderr,
          "nodaemon: no state database: %s %r" % (p.returncode, p.stderr))
    r.start()
    r.ready()
    check(r.stop() == 0, "nodaemon: runnerd exits 0")
    p = ctl("--state", r.state)
    check(p.returncode == 1 and "no runnerd is running on %s" % r.state in p.stderr,
          "nodaemon: stopped: %s %r" % (p.returncode, p.stderr))
    p = ctl("--wait", "soon")
    check(p.returncode == 2 and "--wait: expected a number of seconds, got 'soon'" in p.stderr,
          "nodaemon: a bad --wait: %s %r" % (p.returncode, p.stderr))
    p = ctl("--bogus")
    check(p.returncode == 2 and "unknown option --bogus" in p.stderr and "usage: runnerctl restart" in p.stderr,
          "nodaemon: an unknown option: %s %r" % (p.returncode, p.stderr))


SCENARIOS = [("restart", sc_restart), ("second", sc_second), ("plain", sc_plain), ("nodaemon", sc_nodaemon)]


def after(tmp, name):
    base.kill_live(LIVE)
    del LIVE[:]


def main():
    return base.suite("runnerd-e2e-restart-", SCENARIOS, after,
                      lambda tmp, name: base.runnerd_logs(os.path.join(tmp, name), order=sorted))


if __name__ == "__main__":
    sys.exit(main())
