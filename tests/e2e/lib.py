"""tests/e2e/lib.py: what the e2e suites (tests/e2e/*.py) and the hostile ones (tests/hostile/*.py)
share, not a test: the binaries under test, check() and wait_until() with the suite's tally, the
Gitea double (Double), a registered runnerd (Runner), the task helpers (rows_of, step_rows,
enqueue, final_task), the offline test image, a free port (free_port), `runnerctl exec` of a
workflow with its report (exec_report), the scenario loop and the clean-up after it.

Environment: RUNNERCTL, RUNNERD (binaries), SRCDIR (source tree), as CTest sets them."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
RUNNERCTL = os.environ.get("RUNNERCTL", os.path.join(SRC, "_build", "runnerctl"))
RUNNERD = os.environ.get("RUNNERD", os.path.join(SRC, "_build", "runnerd"))
OWNER_LABEL = "io.runnerd.owner"
JOB_LABEL = "io.runnerd.job"

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("  FAIL:", what, flush=True)
    return cond


class Tally:
    """Checks by name, as the runnerctl suites (tests/cli, tests/hostile) print them: "ok   NAME"
    or "FAIL NAME: DETAIL" (its last `keep` characters; all of it when None). `failures` counts
    the failed ones."""

    def __init__(self, keep=None, flush=False):
        self.failures = 0
        self.keep = keep
        self.flush = flush

    def check(self, name, cond, detail=""):
        if cond:
            print("ok   " + name, flush=self.flush)
        else:
            self.failures += 1
            if detail:
                name += ": " + (detail if self.keep is None else detail[-self.keep:])
            print("FAIL " + name, flush=self.flush)
        return cond


def wait_until(pred, timeout, what, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    check(False, "timed out after %ss waiting for %s" % (timeout, what))
    return None


class Double:
    """The Gitea double (tests/servers/gitea-double) on a free port, and its /_admin API."""

    def __init__(self, tmp):
        self.portfile = os.path.join(tmp, "double.port")
        self.log = open(os.path.join(tmp, "double.log"), "w")
        self.proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "servers", "gitea-double", "gitea_double.py"),
                                      "--port", "0", "--port-file", self.portfile],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(self.portfile), 10, "the double's port")
        self.url = "http://127.0.0.1:%s" % open(self.portfile).read().strip()

    def admin(self, what, body=None):
        req = urllib.request.Request(self.url + "/_admin/" + what, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def task_of_job(self, job_id):
        for t in self.admin("state")["tasks"]:
            if t["jobId"] == job_id:
                return t
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Runner:
    """One registered runnerd: its directory, config, state database and logs (runnerd.N.log,
    one a start). A subclass may set `env` (runnerd's environment; None inherits this one) and
    `live` (a list every started process is added to, for the suite to kill after a scenario)."""
    env = None
    live = None

    def __init__(self, double, tmp, name, image, capacity=1, extra="", label=None):
        self.d = double
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state.db")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("runner:\n  capacity: %d\n  fetch_interval: 1s\n  shutdown_timeout: 30s\n%s"
                    "runnerd:\n  fetch_interval_max: 2s\n" % (capacity, extra))
        token = double.admin("token")["token"]
        label = label or "matric-builder:docker://" + image
        r = subprocess.run([RUNNERCTL, "register", "--no-interactive", "--instance", double.url, "--token", token,
                            "--name", name, "--label", label, "--state", self.state],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "register %s: %s" % (name, r.stderr.strip()))
        ident = None
        for rr in double.admin("state")["runners"]:
            if rr.get("name") == name:
                ident = rr
        self.uuid = ident.get("uuid") if ident else None
        self.proc = None
        self.logs = 0
        self.owner = "runnerd@%s:%s" % (os.uname().nodename, os.path.realpath(self.state))

    def start(self):
        self.logs += 1
        self.logf = open(os.path.join(self.dir, "runnerd.%d.log" % self.logs), "w")
        self.proc = subprocess.Popen([RUNNERD, "-c", self.config, "--state", self.state],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        if self.live is not None:
            self.live.append(self.proc)

    def log_text(self):
        out = []
        for i in range(1, self.logs + 1):
            with open(os.path.join(self.dir, "runnerd.%d.log" % i), errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            check(False, "runnerd did not exit within %ss" % timeout)
        self.logf.close()
        return rc

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            return self.wait(60)
        return self.proc.returncode if self.proc else 0

    def leftovers(self):
        out = []
        for kind in ("container ls -a", "network ls", "volume ls"):
            r = subprocess.run(["docker"] + kind.split() + ["-q", "--filter", "label=%s=%s" % (OWNER_LABEL, self.owner)],
                               capture_output=True, text=True)
            out += r.stdout.split()
        return out


def rows_of(task):
    return [r["content"] for r in task["logRows"]]


def step_rows(task, i):
    s = task["steps"][i]
    return rows_of(task)[s["logIndex"]:s["logIndex"] + s["logLength"]]


def enqueue(double, steps, **kw):
    body = {"runsOn": ["matric-builder"], "steps": steps}
    body.update(kw)
    return double.admin("enqueue", body)["jobId"]


def final_task(double, job, timeout):
    return wait_until(lambda: (lambda t: t if t and t["status"] not in ("running", "waiting") and t["archived"] else None)(
        double.task_of_job(job)), timeout, "job %s to finish and its log to be archived" % job)


def check_no_leftovers(r, what):
    left = wait_until(lambda: not r.leftovers() or None, 20, "no leftovers (%s)" % what)
    check(left is not None and not r.leftovers(), "%s: containers/networks/volumes left: %s" % (what, r.leftovers()))


def test_image(kind="busybox"):
    """The offline test image of that kind (tests/images/build.sh KIND): (reference, None), or
    (None, the builder's stderr) when it cannot be built."""
    p = subprocess.run(["sh", os.path.join(SRC, "tests", "images", "build.sh"), kind],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr
    return p.stdout.strip().splitlines()[-1], None


def labelled(label):
    """The ids of the containers, networks and volumes that carry label (KEY=VALUE)."""
    out = []
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        out += subprocess.run(["docker", *kind, "--filter", "label=" + label],
                              capture_output=True, text=True).stdout.split()
    return out


def exec_report(tmp, wf, args=(), env=None, timeout=300):
    """Runs `runnerctl exec -C tmp --report REPORT ARGS... tmp/wf.yml` with the workflow wf
    written there (env: the whole environment; None inherits this one): (exit status, stdout,
    stderr, the report parsed or None, runnerctl's pid). The report file is removed."""
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write(wf)
    rep = os.path.join(tmp, "report.json")
    if os.path.exists(rep):
        os.unlink(rep)
    p = subprocess.Popen([RUNNERCTL, "exec", "-C", tmp, "--report", rep, *args, path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    report = None
    if os.path.exists(rep):
        with open(rep) as f:
            report = json.load(f)
        os.unlink(rep)
    return p.returncode, out, err, report, p.pid


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bound and released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kill_live(procs):
    """Kills (and reaps) every process of the list that still runs."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def remove_leftovers(tmp):
    """Removes the containers, networks and volumes of any runnerd whose state lives under tmp
    (by their owner label): whatever a failed scenario left behind."""
    for kind in ("container", "network", "volume"):
        ids = subprocess.run(["docker", kind, "ls", "-q"] + (["-a"] if kind == "container" else []) +
                             ["--filter", "label=%s" % OWNER_LABEL], capture_output=True, text=True).stdout.split()
        for i in ids:
            lab = subprocess.run(["docker", kind, "inspect", "-f", "{{index .Labels \"%s\"}}" % OWNER_LABEL, i],
                                 capture_output=True, text=True).stdout.strip()
            if tmp in lab:
                subprocess.run(["docker", kind, "rm", "-f", i], capture_output=True)


def run_scenarios(scenarios, only, args, after=None, logs=None, tail=6000):
    """Runs each (name, fn) of scenarios (those named in only, or all) as fn(*args), under
    "scenario NAME" and "  ok|FAILED in N.Ns". A scenario that raises is a failure, not a crash of
    the suite. after(name), if given, runs after each one however it ended; when a scenario
    failed, the last `tail` characters of each runnerd log logs(name) names are printed as
    (title, path) pairs."""
    for name, fn in scenarios:
        if only and name not in only:
            continue
        print("scenario", name, flush=True)
        before = len(failures)
        t0 = time.monotonic()
        try:
            fn(*args)
        except Exception as e:  # a broken scenario is a failure, not a crash of the suite
            check(False, "%s: %r" % (name, e))
        if after:
            after(name)
        print("  %s in %.1fs" % ("ok" if len(failures) == before else "FAILED", time.monotonic() - t0), flush=True)
        if len(failures) != before and logs:
            for title, path in logs(name):
                print("---- %s" % title)
                print(open(path, errors="replace").read()[-tail:])


def runnerd_logs(top, pred=lambda root, f: True, title=lambda root, f: f, order=lambda files: files):
    """The runnerd.* files below top that pred(root, name) accepts, as (title, path) pairs."""
    out = []
    for root, _, files in os.walk(top):
        for f in order(files):
            if f.startswith("runnerd.") and pred(root, f):
                out.append((title(root, f), os.path.join(root, f)))
    return out


def suite(prefix, scenarios, after=None, logs=None, tail=6000, pin=False, cleanup=None):
    """The main() of a suite whose scenarios are fn(double, tmp, image) against one Gitea double:
    builds the busybox test image (pin: passes its ID), runs the scenarios named on the command
    line (or all) in a fresh directory prefix*, then stops the double, runs cleanup(tmp), removes
    what runnerd left and the directory, and returns the exit status. after(tmp, name) and
    logs(tmp, name) are run_scenarios()'s after and logs."""
    only = sys.argv[1:]
    image, err = test_image()
    if image is None:
        print("building the test image failed:", err)
        return 1
    if pin:
        image = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image],
                               capture_output=True, text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix=prefix)
    d = Double(tmp)
    try:
        run_scenarios(scenarios, only, (d, tmp, image), after and (lambda name: after(tmp, name)),
                      logs and (lambda name: logs(tmp, name)), tail)
    finally:
        d.stop()
        if cleanup:
            cleanup(tmp)
        remove_leftovers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


def summary():
    """Prints the tally and returns the suite's exit status."""
    print("%d checks, %d failed" % (checks, len(failures)))
    return 1 if failures else 0
