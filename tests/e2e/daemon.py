#!/usr/bin/env python3
"""End-to-end tests of runnerd: the real `runnerctl register` and `runnerd` binaries against the
Gitea server double (tests/servers/gitea-double) and the real Docker engine, with an image built offline
(tests/images/build.sh busybox).

Scenarios: a task's rows arrive in order with masked secrets and outputs; cancellation from the
server (always() steps still run); a step printing without pause (its state and a cancel get
through while it prints); capacity 4 with 8 queued tasks; a graceful drain on SIGTERM;
the server down for 30 s mid-task; kill -9 of runnerd mid-step and a restart (the task resumes,
every row exactly once, no step twice); a host-label job that does not find runnerd's own
GnuTLS switch in its agent's environment; the job container removed while runnerd is down; detach
with SIGUSR2 and reattach; a runner deleted on the server (distinct exit status).

Environment: RUNNERCTL, RUNNERD (binaries), SRCDIR (source tree). Run one scenario with
`daemon.py NAME`."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402  (the Gitea double wrapper, Runner and helpers)
from lib import (RUNNERCTL, RUNNERD, OWNER_LABEL, Runner, check, check_no_leftovers,  # noqa: E402
                 enqueue, final_task, rows_of, step_rows, wait_until)


# ---------------------------------------------------------------- scenarios

def sc_basic(d, tmp, image):
    r = Runner(d, tmp, "basic", image)
    r.start()
    job = enqueue(d, [{"id": "a", "name": "answer", "run": 'echo "answer=42" >> "$GITHUB_OUTPUT"; echo "secret is ${{ secrets.S1 }}"'},
                      {"name": "count", "run": "for i in 1 2 3; do echo row $i; done"},
                      {"name": "skipped", "if": "failure()", "run": "echo never"}],
                  secrets={"S1": "topsecret"}, outputs={"answer": "${{ steps.a.outputs.answer }}"})
    t = final_task(d, job, 60)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "success", "basic: task result %s" % t["status"])
    check([s["status"] for s in t["steps"]] == ["success", "success", "skipped"], "basic: step results %s" % [s["status"] for s in t["steps"]])
    check(step_rows(t, 1) == ["row 1", "row 2", "row 3"], "basic: step 1 rows %s" % step_rows(t, 1))
    check("secret is ***" in step_rows(t, 0), "basic: the secret is masked in step 0's rows %s" % step_rows(t, 0))
    check(not any("topsecret" in x for x in rows), "basic: the secret never reaches the server")
    check(t["outputs"] == {"answer": "42"}, "basic: outputs %s" % t["outputs"])
    check(len(rows) == t["logLength"], "basic: every row stored once (%d rows, log length %d)" % (len(rows), t["logLength"]))
    check(rows[-1].endswith("Job succeeded"), "basic: last row %r" % rows[-1])
    check_no_leftovers(r, "basic")
    # runnerd executed itself once with GNUTLS_NO_IMPLICIT_INIT=1 (the environment it was
    # executed with; it unsets the variable afterwards): same pid, and it ran the job above.
    with open("/proc/%d/environ" % r.proc.pid, "rb") as f:
        env0 = f.read().split(b"\0")
    check(b"GNUTLS_NO_IMPLICIT_INIT=1" in env0 and b"RUNNERD_SKIPPED_GNUTLS_INIT=1" in env0,
          "basic: runnerd re-executed itself without GnuTLS's implicit init")
    # runnerctl tasks/logs read the same state.
    out = subprocess.run([RUNNERCTL, "logs", "--state", r.state, str(t["id"])], capture_output=True, text=True)
    check(out.returncode == 0 and "row 2" in out.stdout and "topsecret" not in out.stdout,
          "basic: runnerctl logs prints the spooled log: %s" % out.stderr)
    check(r.stop() == 0, "basic: runnerd exits 0 on SIGTERM")


def sc_hostenv(d, tmp, image):
    """A host-label job reads the environment of its parent, the agent runnerd started: the
    GNUTLS_NO_IMPLICIT_INIT runnerd set for itself before executing itself is not there."""
    r = Runner(d, tmp, "hostenv", image, label="matric-builder:host")
    r.start()
    job = enqueue(d, [{"name": "peek", "run": "echo parent=$(cat /proc/$PPID/comm); "
                       "echo seen=$(tr '\\0' '\\n' < /proc/$PPID/environ | "
                       "grep -c -e '^GNUTLS_NO_IMPLICIT_INIT=' -e '^RUNNERD_SKIPPED_GNUTLS_INIT=')"}])
    t = final_task(d, job, 60)
    if t is None:
        return
    rows = step_rows(t, 0)
    check(t["status"] == "success", "hostenv: task result %s: %s" % (t["status"], rows_of(t)))
    check("parent=runner-agent" in rows, "hostenv: the step's parent is the agent: %s" % rows)
    check("seen=0" in rows, "hostenv: the agent does not inherit runnerd's GnuTLS switch: %s" % rows)
    check(r.stop() == 0, "hostenv: runnerd exits 0 on SIGTERM")


def sc_cancel(d, tmp, image):
    r = Runner(d, tmp, "cancel", image)
    r.start()
    job = enqueue(d, [{"name": "long", "run": "echo started; sleep 60; echo not-here"},
                      {"name": "cleanup", "if": "always()", "run": "echo cleanup ran"},
                      {"name": "after", "run": "echo should-not-run"}])
    t = wait_until(lambda: (lambda t: t if t and "started" in rows_of(t) else None)(d.task_of_job(job)), 60, "the long step to start")
    if t is None:
        return
    t0 = time.monotonic()
    d.admin("cancel", {"taskId": t["id"]})
    wait_until(lambda: (lambda t: t and any("cleanup ran" in x for x in rows_of(t)))(d.task_of_job(job)), 40,
               "the always() step's output after the cancel")
    took = time.monotonic() - t0
    t = d.task_of_job(job)
    rows = rows_of(t)
    check(t["status"] == "cancelled", "cancel: task %s" % t["status"])
    check(not any("not-here" in x or "should-not-run" in x for x in rows), "cancel: nothing after the cancel ran: %s" % rows[-6:])
    check(took < 30, "cancel: the job stopped in %.1fs (sleep 60 was running)" % took)
    check_no_leftovers(r, "cancel")
    check(r.stop() == 0, "cancel: runnerd exits 0")


def sc_chatty(d, tmp, image):
    """A step that prints without pause: its state (with its growing log length) and a cancel
    still get through while it prints (state goes between log calls, not only when no rows
    wait)."""
    r = Runner(d, tmp, "chatty", image)
    r.start()
    job = enqueue(d, [{"name": "chatty", "run": "i=0; while [ $i -lt 600 ]; do echo line-$i; i=$((i+1)); "
                                              "sleep 0.05; done; echo chatty-done"},
                      {"name": "after", "run": "echo should-not-run"}])

    def live(t):
        if not t or any("chatty-done" in x for x in rows_of(t)):
            return None  # too late: the step is over
        printed = sum(1 for x in rows_of(t) if x.startswith("line-"))
        st = t.get("steps") or []
        return t if printed >= 20 and st and st[0].get("logLength", 0) >= 10 else None
    t = wait_until(lambda: live(d.task_of_job(job)), 25, "the printing step's state with its log length, while it prints")
    check(t is not None, "chatty: the step's state reached the server while it printed")
    if t is None:
        t = d.task_of_job(job)
    d.admin("cancel", {"taskId": t["id"]})
    t = final_task(d, job, 60)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "cancelled", "chatty: task %s" % t["status"])
    check(not any("chatty-done" in x or "should-not-run" in x for x in rows),
          "chatty: the cancel stopped the step while it printed: %s" % rows[-4:])
    check_no_leftovers(r, "chatty")
    check(r.stop() == 0, "chatty: runnerd exits 0")


def sc_capacity(d, tmp, image):
    r = Runner(d, tmp, "capacity", image, capacity=4)
    jobs = [enqueue(d, [{"name": "work", "run": "echo job %d; sleep 3; echo done %d" % (i, i)}], runsOn=["matric-builder"])
            for i in range(8)]
    r.start()
    peak = 0
    end = time.monotonic() + 120
    while time.monotonic() < end:
        # One snapshot of the double's state per look: tasks read one by one could count a
        # finishing job and the job that took its slot as running at once.
        by_job = {t["jobId"]: t for t in d.admin("state")["tasks"]}
        ts = [by_job.get(j) for j in jobs]
        running = sum(1 for t in ts if t and t["status"] == "running")
        peak = max(peak, running)
        if all(t and t["status"] != "running" and t["archived"] for t in ts):
            break
        time.sleep(0.2)
    ts = [d.task_of_job(j) for j in jobs]
    check(all(t and t["status"] == "success" for t in ts), "capacity: all 8 succeeded: %s" % [t and t["status"] for t in ts])
    check(peak == 4, "capacity: at most 4 at once and 4 reached (peak %d)" % peak)
    for i, t in enumerate(ts):
        if t:
            check(step_rows(t, 0) == ["job %d" % i, "done %d" % i], "capacity: job %d rows %s" % (i, step_rows(t, 0)))
    check_no_leftovers(r, "capacity")
    check(r.stop() == 0, "capacity: runnerd exits 0")


def sc_drain(d, tmp, image):
    r = Runner(d, tmp, "drain", image)
    r.start()
    job = enqueue(d, [{"name": "work", "run": "echo begin; sleep 4; echo end"}])
    wait_until(lambda: (lambda t: t and "begin" in rows_of(t))(d.task_of_job(job)), 60, "the drain job to start")
    r.signal(signal.SIGTERM)
    rc = r.wait(60)
    t = d.task_of_job(job)
    check(rc == 0, "drain: exit status %s" % rc)
    check(t and t["status"] == "success" and "end" in rows_of(t), "drain: the running job finished and was reported: %s" % (t and t["status"]))
    check(t and t["archived"], "drain: the final log was delivered (archived)")
    check_no_leftovers(r, "drain")


def sc_outage(d, tmp, image):
    r = Runner(d, tmp, "outage", image)
    r.start()
    n = 40
    job = enqueue(d, [{"name": "ticks", "run": "for i in $(seq 1 %d); do echo tick $i; sleep 1; done" % n}])
    wait_until(lambda: (lambda t: t and "tick 2" in rows_of(t))(d.task_of_job(job)), 60, "the outage job to start")
    d.admin("outage", {"seconds": 30})
    time.sleep(31)
    t = final_task(d, job, 90)
    if t is None:
        return
    check(t["status"] == "success", "outage: task %s" % t["status"])
    ticks = [x for x in step_rows(t, 0)]
    check(ticks == ["tick %d" % i for i in range(1, n + 1)], "outage: every row once and in order (%d rows)" % len(ticks))
    check(r.proc.poll() is None, "outage: runnerd kept running")
    check_no_leftovers(r, "outage")
    check(r.stop() == 0, "outage: runnerd exits 0")


def sc_kill9(d, tmp, image):
    r = Runner(d, tmp, "kill9", image)
    r.start()
    n = 30
    job = enqueue(d, [{"name": "one", "run": "echo first"},
                      {"name": "two", "run": "echo start >> starts; for i in $(seq 1 %d); do echo line $i; sleep 0.3; done" % n},
                      {"name": "three", "run": "echo starts=$(wc -l < starts)"}])
    wait_until(lambda: (lambda t: t and "line 5" in rows_of(t))(d.task_of_job(job)), 60, "line 5 before the kill")
    r.proc.kill()
    r.wait(10)
    time.sleep(2)
    r.start()
    t = final_task(d, job, 90)
    if t is None:
        return
    check(t["status"] == "success", "kill9: task %s" % t["status"])
    check(step_rows(t, 1) == ["line %d" % i for i in range(1, n + 1)], "kill9: step two's rows exactly once, in order: %s" % step_rows(t, 1)[:40])
    check(step_rows(t, 2) == ["starts=1"], "kill9: no step ran twice: %s" % step_rows(t, 2))
    rows = rows_of(t)
    check(rows.count("first") == 1, "kill9: step one's row once")
    check("resuming at step 1" in r.log_text(), "kill9: runnerd says it resumed")
    check_no_leftovers(r, "kill9")
    check(r.stop() == 0, "kill9: runnerd exits 0")


def sc_gone(d, tmp, image):
    r = Runner(d, tmp, "gone", image)
    r.start()
    job = enqueue(d, [{"name": "long", "run": "echo going; sleep 60"}])
    wait_until(lambda: (lambda t: t and "going" in rows_of(t))(d.task_of_job(job)), 60, "the job to start")
    r.proc.kill()
    r.wait(10)
    names = subprocess.run(["docker", "ps", "-aq", "--filter", "label=%s=%s" % (OWNER_LABEL, r.owner)],
                           capture_output=True, text=True).stdout.split()
    check(len(names) == 1, "gone: one job container while runnerd is down: %s" % names)
    subprocess.run(["docker", "rm", "-f"] + names, capture_output=True)
    r.start()
    t = final_task(d, job, 60)
    if t is None:
        return
    check(t["status"] == "failure", "gone: task %s" % t["status"])
    check(any("container is gone" in x for x in rows_of(t)), "gone: a row says why: %s" % rows_of(t)[-3:])
    check_no_leftovers(r, "gone")
    check(r.stop() == 0, "gone: runnerd exits 0")


def sc_detach(d, tmp, image):
    r = Runner(d, tmp, "detach", image)
    r.start()
    n = 20
    job = enqueue(d, [{"name": "ticks", "run": "for i in $(seq 1 %d); do echo t $i; sleep 0.3; done" % n}])
    wait_until(lambda: (lambda t: t and "t 3" in rows_of(t))(d.task_of_job(job)), 60, "the detach job to start")
    r.signal(signal.SIGUSR2)
    rc = r.wait(15)
    check(rc == 75, "detach: SIGUSR2 exits with 75 (restart), got %s" % rc)
    running = subprocess.run(["docker", "ps", "-q", "--filter", "label=%s=%s" % (OWNER_LABEL, r.owner)],
                             capture_output=True, text=True).stdout.split()
    check(len(running) >= 1, "detach: the job container keeps running while runnerd is away")
    r.start()
    t = final_task(d, job, 60)
    if t is None:
        return
    check(t["status"] == "success", "detach: task %s" % t["status"])
    check(step_rows(t, 0) == ["t %d" % i for i in range(1, n + 1)], "detach: every row once: %s" % step_rows(t, 0))
    check_no_leftovers(r, "detach")
    check(r.stop() == 0, "detach: runnerd exits 0")


def sc_unregistered(d, tmp, image):
    r = Runner(d, tmp, "forgotten", image)
    r.start()
    time.sleep(2)
    d.admin("forget", {"uuid": r.uuid})
    rc = r.wait(60)
    check(rc == 78, "unregistered: exit status 78, got %s" % rc)
    check("does not know runner" in r.log_text(), "unregistered: a clear message")


def sc_faults(d, tmp, image):
    r = Runner(d, tmp, "faults", image)
    # A slow reply within fetch_timeout (5 s). (A FetchTask the runner gives up on while the
    # server assigns a task loses that task until Gitea's zombie cleanup: a protocol limit.)
    d.admin("fault", {"procedure": "FetchTask", "kind": "delay", "delayMs": 3000, "count": 1})
    d.admin("fault", {"procedure": "FetchTask", "kind": "status", "status": 500, "count": 2})
    d.admin("fault", {"procedure": "UpdateLog", "kind": "status", "status": 503, "count": 3})
    d.admin("fault", {"procedure": "UpdateLog", "kind": "drop", "count": 2})
    d.admin("fault", {"procedure": "UpdateTask", "kind": "drop", "count": 2})
    d.admin("fault", {"procedure": "UpdateTask", "kind": "delay", "delayMs": 3000, "count": 1})
    r.start()
    job = enqueue(d, [{"name": "rows", "run": "for i in $(seq 1 15); do echo r $i; sleep 0.2; done"}])
    t = final_task(d, job, 90)
    if t is None:
        return
    check(t["status"] == "success", "faults: task %s" % t["status"])
    check(step_rows(t, 0) == ["r %d" % i for i in range(1, 16)], "faults: every row once and in order: %s" % step_rows(t, 0))
    pending = {k: v for k, v in (d.admin("state").get("pendingFaults") or {}).items() if k != "FetchTask"}
    check(not pending, "faults: every report fault was met: %s" % pending)
    check_no_leftovers(r, "faults")
    check(r.stop() == 0, "faults: runnerd exits 0")


def sc_badinput(d, tmp, image):
    # A task whose workflow is broken: the task fails with the problems in its log.
    r = Runner(d, tmp, "badinput", image)
    r.start()
    job = enqueue(d, [{"name": "x", "run": "echo x"}],
                  workflowPayload='name: broken\non: push\njobs:\n  build:\n    runs-on: matric-builder\n'
                                  '    steps:\n      - run: echo ${{ \n        uses: a/b@v1\n')
    t = final_task(d, job, 60)
    if t is not None:
        rows = rows_of(t)
        check(t["status"] == "failure", "badinput: task %s" % t["status"])
        check(any(x.startswith("::error::") and "workflow" in x for x in rows),
              "badinput: the problems are in the log: %s" % rows)
    check(r.stop() == 0, "badinput: runnerd exits 0")
    # No registration in the state file: exit 2, naming the file.
    empty = os.path.join(tmp, "empty.db")
    p = subprocess.run([RUNNERD, "--state", empty], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and empty in p.stderr and "runnerctl register" in p.stderr,
          "badinput: unregistered state: %s %r" % (p.returncode, p.stderr))
    # A bad configuration: exit 2 with file:line:col.
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("runner:\n  capacity: 2\nrunnerd:\n  shutdown: sometimes\n")
    p = subprocess.run([RUNNERD, "-c", bad, "--state", r.state], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "%s:4:13: runnerd.shutdown: expected drain or detach" % bad in p.stderr,
          "badinput: bad config: %s %r" % (p.returncode, p.stderr))


SCENARIOS = [("basic", sc_basic), ("hostenv", sc_hostenv), ("cancel", sc_cancel), ("chatty", sc_chatty), ("capacity", sc_capacity), ("drain", sc_drain),
             ("kill9", sc_kill9), ("gone", sc_gone), ("detach", sc_detach), ("unregistered", sc_unregistered), ("faults", sc_faults), ("badinput", sc_badinput),
             ("outage", sc_outage)]


def main():
    return lib.suite("runnerd-e2e-", SCENARIOS, logs=lambda tmp, name: lib.runnerd_logs(
        os.path.join(tmp, {"unregistered": "forgotten"}.get(name, name))))


if __name__ == "__main__":
    sys.exit(main())
