#!/usr/bin/env python3
"""End-to-end tests of runnerd against a real Gitea server (1.25, sqlite, Actions on), started
throwaway on loopback from the shared test tools ($RUNNERD_SHARED_DIR, else $SRCDIR/../shared:
gitea/start.sh). Without them the suite prints why and exits 0 as skipped.

What a user sees in Gitea's API and web UI, with the real `runnerctl register`, `runnerd` and
Docker engine, the busybox test image (tests/images/build.sh busybox) mapped to the labels:

  register     a CPU and a GPU identity (fake GPU UUIDs): both online with their labels
  basic        a push triggers a workflow: checkout (HEAD equals GITHUB_SHA), matrix + needs +
               outputs, a secret masked in Gitea's stored log, a variable, continue-on-error,
               failure() and always()
  unserved     a job for a label nobody serves stays queued
  live         step states and per-step log placement in the job page's live view while steps
               print continuously: a transition shows within 1 s, the running step's lines
               under it, new lines at least every 2 s
  cancel       cancel from the web UI while a step prints continuously: acted on within 3 s
  crash        kill -9 of runnerd mid-job and a restart, then Gitea down for 20 s mid-job
               (killed and restarted on the same port and directory): every log line exactly
               once in Gitea's stored log, the job succeeds

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `gitea.py NAME...` (register
always runs: the others need its runner)."""
import base64
import calendar
import http.cookiejar
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402  (check, wait_until, the binaries)

check, wait_until = base.check, base.wait_until
SRC, RUNNERCTL = base.SRC, base.RUNNERCTL
GPUS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
LABEL = "e2e-linux"
GPU_LABEL = "e2e-gpu"


def shared_dir():
    d = os.environ.get("RUNNERD_SHARED_DIR") or os.path.join(SRC, "..", "shared")
    return os.path.abspath(d)


class Gitea:
    """One throwaway Gitea: its API (token), its web UI (a logged-in session) and its process."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "gitea")
        out = subprocess.run(["bash", os.path.join(shared_dir(), "gitea", "start.sh"), self.dir],
                             capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError("gitea start.sh: %s" % out.stderr[-2000:])
        self.env = {}
        for line in out.stdout.splitlines():
            m = re.match(r"export (\w+)=(.*)$", line)
            if m:
                v = m.group(2)
                if v.startswith("'") and v.endswith("'"):
                    v = v[1:-1]
                self.env[m.group(1)] = v
        self.url = self.env["GITEA_URL"]
        self.pid = int(self.env["GITEA_PID"])
        self.port = int(self.url.rsplit(":", 1)[1])
        self.proc = None  # a restarted server is our child
        self.jar = http.cookiejar.CookieJar()
        self.web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.logged_in = False

    # -- the API
    def api(self, method, path, body=None, raw=False, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method,
                                     headers={"Authorization": "token " + self.env["GITEA_TOKEN"],
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            b = r.read()
        if raw:
            return b.decode("utf-8", "replace")
        return json.loads(b) if b.strip() else None

    def repo(self, name, workflows, secrets=None, variables=None):
        """A repository with secrets and variables, then its workflow files (the push runs them)."""
        self.api("POST", "/user/repos", {"name": name, "auto_init": True})
        for k, v in (secrets or {}).items():
            self.api("PUT", "/repos/ci/%s/actions/secrets/%s" % (name, k), {"data": v})
        for k, v in (variables or {}).items():
            self.api("POST", "/repos/ci/%s/actions/variables/%s" % (name, k), {"value": v})
        files = [{"operation": "create", "path": ".gitea/workflows/%s" % f,
                  "content": base64.b64encode(y.encode()).decode()} for f, y in workflows.items()]
        r = self.api("POST", "/repos/ci/%s/contents" % name, {"files": files, "message": "workflows"})
        return r["commit"]["sha"]

    def runs(self, repo):
        return self.api("GET", "/repos/ci/%s/actions/runs" % repo).get("workflow_runs") or []

    def jobs(self, repo, run_id):
        return self.api("GET", "/repos/ci/%s/actions/runs/%d/jobs" % (repo, run_id)).get("jobs") or []

    def job_log(self, repo, job_id):
        """The job's stored log ("" while it has none: Gitea 1.25 answers 404 before the job has
        a task and 500 while the task has no log file yet; what a test checks is the content)."""
        try:
            return self.api("GET", "/repos/ci/%s/actions/jobs/%d/logs" % (repo, job_id), raw=True)
        except urllib.error.HTTPError as e:
            if e.code in (404, 500):
                return ""
            raise

    def the_run(self, repo, timeout=60):
        runs = wait_until(lambda: self.runs(repo), timeout, "a run of %s" % repo)
        return runs[0] if runs else None

    def all_jobs_done(self, repo, run_id, timeout):
        def done():
            js = self.jobs(repo, run_id)
            return js if js and all(j["status"] == "completed" for j in js) else None
        return wait_until(done, timeout, "every job of %s to complete" % repo, step=0.5)

    # -- the web UI
    def csrf(self):
        for c in self.jar:
            if c.name == "_csrf":
                return urllib.parse.unquote(c.value)
        return ""

    def login(self):
        if self.logged_in:
            return
        self.web.open(self.url + "/user/login", timeout=30).read()
        data = urllib.parse.urlencode({"_csrf": self.csrf(), "user_name": self.env["GITEA_ADMIN"],
                                       "password": self.env["GITEA_PASS"]}).encode()
        self.web.open(self.url + "/user/login", data=data, timeout=30).read()
        self.web.open(self.url + "/", timeout=30).read()
        self.logged_in = True

    def view(self, repo, run_number, job_index, cursors):
        """The job page's live view: run status, the job's steps, log lines per step."""
        self.login()
        req = urllib.request.Request("%s/ci/%s/actions/runs/%d/jobs/%d" % (self.url, repo, run_number, job_index),
                                     data=json.dumps({"logCursors": cursors}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Csrf-Token": self.csrf()})
        with self.web.open(req, timeout=30) as r:
            return json.loads(r.read())

    def cancel(self, repo, run_number):
        self.login()
        data = urllib.parse.urlencode({"_csrf": self.csrf()}).encode()
        req = urllib.request.Request("%s/ci/%s/actions/runs/%d/cancel" % (self.url, repo, run_number), data=data,
                                     headers={"X-Csrf-Token": self.csrf()})
        with self.web.open(req, timeout=30) as r:
            r.read()

    # -- the process
    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        else:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: not os.path.exists("/proc/%d" % self.pid) or
                       open("/proc/%d/stat" % self.pid).read().split()[2] == "Z" or None, 10, "gitea to die")

    def restart(self):
        e = self.env
        self.webout = open(os.path.join(e["GITEA_WORK"], "log", "web.restart.out"), "a")
        self.proc = subprocess.Popen([e["GITEA_BIN"], "--config", e["GITEA_CONF"], "--work-path", e["GITEA_WORK"], "web"],
                                     stdout=self.webout, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

        def up():
            try:
                with urllib.request.urlopen(self.url + "/api/healthz", timeout=2) as r:
                    return r.status == 200
            except (OSError, urllib.error.URLError):
                return None
        wait_until(up, 60, "gitea to answer again")

    def stop(self):
        self.kill()


class GiteaRunner(base.Runner):
    """One runnerd in tmp/runner registered with the real Gitea's instance-wide token: its
    config.yaml's runnerd: section holds fetch_interval_max: 1s and then `settings` (YAML text
    indented by two); each (name, label, gpu) of identities is registered (with --gpu if gpu is
    true) with runnerd's environment `env` (None: this one's); start() and log_text() are
    lib.py's Runner's."""

    def __init__(self, g, tmp, settings, identities, env=None):
        self.g = g
        self.dir = os.path.join(tmp, "runner")
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state.db")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("runner:\n  capacity: 4\n  fetch_interval: 1s\n  shutdown_timeout: 30s\n"
                    "runnerd:\n  fetch_interval_max: 1s\n" + settings)
        self.env = env
        for name, label, gpu in identities:
            r = subprocess.run([RUNNERCTL, "register", "--no-interactive", "--instance", g.url,
                                "--token", g.env["GITEA_RUNNER_TOKEN"], "--name", name, "--label", label,
                                "--state", self.state, "-c", self.config] + (["--gpu"] if gpu else []),
                               capture_output=True, text=True, timeout=60, env=self.env)
            check(r.returncode == 0, "register: %s registers: %s" % (name, r.stderr.strip()))
        self.proc = None
        self.logs = 0
        self.owner = "runnerd@%s:%s" % (os.uname().nodename, os.path.realpath(self.state))


class Runner(GiteaRunner):
    """One runnerd with a CPU identity (LABEL) and a GPU identity (GPU_LABEL, fake GPUs: nothing
    here asks an engine for them)."""

    def __init__(self, g, tmp, image):
        env = dict(os.environ)
        env["RUNNERD_NVIDIA_SMI"] = "/bin/false"
        env["RUNNERD_NVIDIA_PROC"] = os.path.join(tmp, "runner", "no-proc")
        super().__init__(g, tmp, "  gpus:\n" + "".join("    - %s\n" % u for u in GPUS) +
                         "  labels:\n    %s:\n      image: %s\n    %s:\n      image: %s\n      gpus: 1\n"
                         % (LABEL, image, GPU_LABEL, image),
                         (("e2e-cpu", LABEL, False), ("e2e-gpu", GPU_LABEL, True)), env)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                check(False, "runnerd did not exit within 60 s")
                return self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def tasks(self):
        r = subprocess.run([RUNNERCTL, "tasks", "--state", self.state], capture_output=True, text=True)
        return r.stdout + r.stderr


def log_time(line):
    """The time of one line of runnerd's own log (2026-12-07T05:09:45.240Z ...), or None."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z", line)
    if not m:
        return None
    v = [int(x) for x in m.groups()[:6]]
    return calendar.timegm((v[0], v[1], v[2], v[3], v[4], v[5], 0, 0, 0)) + float(m.group(7) or 0)


def stored_lines(text):
    """Gitea's stored job log without each line's timestamp."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\d{4}-\d\d-\d\dT[0-9:.]+Z (.*)$", line)
        out.append(m.group(1) if m else line)
    return out


def printing(prefix, n, every="0.4"):
    """A step that prints n numbered lines continuously, then PREFIX-end."""
    return ('i=0; while [ $i -lt %d ]; do i=$((i+1)); echo %s-$i; sleep %s; done; echo %s-end'
            % (n, prefix, every, prefix))


# ---------------------------------------------------------------- scenarios

def sc_register(g, r, tmp):
    def online():
        rs = g.api("GET", "/admin/actions/runners").get("runners") or []
        by = {x["name"]: x for x in rs}
        ok = all(n in by and by[n]["status"] == "online" for n in ("e2e-cpu", "e2e-gpu"))
        return by if ok else None
    by = wait_until(online, 30, "both runners online in Gitea's API")
    if not by:
        return
    check([l["name"] for l in by["e2e-cpu"]["labels"]] == [LABEL],
          "register: the CPU runner's labels in Gitea: %s" % by["e2e-cpu"]["labels"])
    check([l["name"] for l in by["e2e-gpu"]["labels"]] == [GPU_LABEL],
          "register: the GPU runner's labels in Gitea: %s" % by["e2e-gpu"]["labels"])


BASIC = """on: push
jobs:
  prepare:
    runs-on: %(label)s
    outputs:
      flavour: ${{ steps.p.outputs.flavour }}
    steps:
      - uses: actions/checkout@v4
      - id: p
        run: |
          echo "sha=$GITHUB_SHA"
          echo "readme=$(cat README.md | head -n 1)"
          echo "flavour=crunchy" >> "$GITHUB_OUTPUT"
  build:
    needs: prepare
    runs-on: %(label)s
    strategy:
      matrix:
        n: [1, 2]
    outputs:
      r: ${{ steps.o.outputs.r }}
    steps:
      - id: o
        run: |
          echo "matrix-${{ matrix.n }}-${{ needs.prepare.outputs.flavour }}"
          echo "r=built" >> "$GITHUB_OUTPUT"
  final:
    needs: [prepare, build]
    runs-on: %(label)s
    steps:
      - run: echo "secret=${{ secrets.TOPSECRET }} var=${{ vars.COLOUR }} flavour=${{ needs.prepare.outputs.flavour }} r=${{ needs.build.outputs.r }}"
      - id: bad
        continue-on-error: true
        run: exit 3
      - if: failure()
        run: echo never-failure-after-coe
      - run: echo "after-coe outcome=${{ steps.bad.outcome }} conclusion=${{ steps.bad.conclusion }}"
      - name: fails
        run: exit 1
      - if: failure()
        run: echo saw-failure
      - if: always()
        run: echo always-ran
      - run: echo never-after-failure
""" % {"label": LABEL}

UNSERVED = """on: push
jobs:
  nobody:
    runs-on: label-nobody-serves
    steps:
      - run: echo never
"""


def sc_basic(g, r, tmp):
    secret = "s3cr3t-Vh7pQ2"
    sha = g.repo("basic", {"ci.yml": BASIC}, secrets={"TOPSECRET": secret}, variables={"COLOUR": "teal"})
    g.repo("unserved", {"ci.yml": UNSERVED})
    run = g.the_run("basic")
    if not run:
        return
    check(run["head_sha"] == sha, "basic: the run is for the pushed commit")
    jobs = g.all_jobs_done("basic", run["id"], 150)
    if not jobs:
        return
    logs = {}
    for j in jobs:
        logs.setdefault(j["name"], []).append(stored_lines(g.job_log("basic", j["id"])))
    concl = sorted((j["name"], j["conclusion"]) for j in jobs)
    check(concl == sorted([("prepare", "success"), ("build (1)", "success"), ("build (2)", "success"),
                           ("final", "failure")]), "basic: job conclusions %s" % concl)
    prep = logs.get("prepare", [[]])[0]
    check("sha=%s" % sha in prep, "basic: GITHUB_SHA is the pushed commit: %s" % [x for x in prep if "sha=" in x])
    check("readme=# basic" in prep, "basic: the checkout has the repository's files: %s" % [x for x in prep if "readme" in x])
    for n in (1, 2):
        b = logs.get("build (%d)" % n, [[]])[0]
        check("matrix-%d-crunchy" % n in b, "basic: matrix job %d sees needs' output: %s" % (n, b[-12:]))
    fin = logs.get("final", [[]])[0]
    check("secret=*** var=teal flavour=crunchy r=built" in fin,
          "basic: secret masked, var, needs outputs in the final job: %s" % [x for x in fin if "secret=" in x])
    check("after-coe outcome=failure conclusion=success" in fin, "basic: continue-on-error: %s" % fin[-20:])
    check("never-failure-after-coe" not in fin, "basic: failure() is false after a continue-on-error step")
    check("saw-failure" in fin and "always-ran" in fin and "never-after-failure" not in fin,
          "basic: failure() and always() after a failing step: %s" % fin[-20:])
    check(not any(secret in x for ls in logs.values() for l in ls for x in l),
          "basic: the secret is nowhere in Gitea's stored logs")
    # The label nobody serves: still queued long after it was pushed.
    urun = g.the_run("unserved", 10)
    if urun:
        uj = g.jobs("unserved", urun["id"])
        check(uj and all(j["status"] in ("queued", "waiting") for j in uj),
              "unserved: the job stays queued: %s" % [(j["status"], j.get("runner_name")) for j in uj])


LIVE = """on: push
jobs:
  live:
    runs-on: %s
    steps:
      - name: A
        run: %s
      - name: B
        run: %s
""" % (LABEL, printing("a", 16), printing("b", 16))


def sc_live(g, r, tmp):
    g.repo("live", {"live.yml": LIVE})
    run = g.the_run("live")
    if not run:
        return
    num = run["run_number"]
    polls = []  # (time, statuses, lines per step)
    end = time.time() + 90
    while time.time() < end:
        try:
            v = g.view("live", num, 0, [{"step": i, "cursor": 0, "expanded": True} for i in range(4)])
        except (OSError, urllib.error.URLError) as e:
            check(False, "live: the job page's view: %s" % e)
            return
        steps = [s["status"] for s in v["state"]["currentJob"]["steps"]]
        lines = {sl["step"]: [l["message"] for l in sl["lines"]] for sl in v["logs"]["stepsLog"]}
        polls.append((time.time(), steps, lines))
        if v["state"]["run"]["done"]:
            break
        time.sleep(0.2)
    if not check(polls and polls[-1][1] == ["success"] * 4, "live: every step succeeds: %s" % (polls[-1][1] if polls else None)):
        return
    # Where lines showed while the job ran: the steps' output never under "Set up job".
    setup_steps = set(x for _, _, ls in polls for x in ls.get(0, []) if re.match(r"[ab]-", x))
    check(not setup_steps, "live: step output shown under Set up job: %s" % sorted(setup_steps)[:5])
    # The running step's lines under it while it runs, growing at least every 2 s.
    for idx, name in ((1, "A"), (2, "B")):
        running = [(t, len(ls.get(idx, []))) for t, st, ls in polls if len(st) == 4 and st[idx] == "running"]
        if not check(running, "live: step %s seen running" % name):
            continue
        shown = [(t, n) for t, n in running if n > 0]
        check(shown, "live: step %s's lines shown under it while it runs" % name)
        gaps, last_t, last_n = [], None, 0
        for t, n in shown:
            if n > last_n:
                if last_t is not None:
                    gaps.append(t - last_t)
                last_t, last_n = t, n
        worst = max(gaps) if gaps else 0
        print("  live: step %s running for %.1f s, its lines grew %d times, longest gap %.2f s"
              % (name, running[-1][0] - running[0][0], len(gaps), worst), flush=True)
        check(len(gaps) >= 3 and worst <= 2.5, "live: step %s's lines in Gitea grow at least every 2 s (worst %.2f s)" % (name, worst))
    # The transition A -> B: shown within 1 s of A's last line.
    log = stored_lines(g.job_log("live", g.jobs("live", run["id"])[0]["id"]))
    check(sum(1 for x in log if re.match(r"[ab]-\d+$", x)) == 32, "live: every line once in the stored log")
    a_end = None
    v = g.view("live", num, 0, [{"step": 1, "cursor": 0, "expanded": True}])
    for sl in v["logs"]["stepsLog"]:
        for l in sl["lines"]:
            if l["message"] == "a-end":
                a_end = l["timestamp"]
    seen_b = next((t for t, st, _ in polls if len(st) == 4 and st[1] == "success" and st[2] in ("running", "success")), None)
    if check(a_end and seen_b, "live: A's end and B's start seen (%s, %s)" % (a_end, seen_b)):
        lat = seen_b - a_end
        print("  live: step transition shown %.2f s after the step's last line" % lat, flush=True)
        check(lat <= 1.5, "live: a step transition reaches Gitea within 1 s (%.2f s, poll 0.2 s)" % lat)


CANCEL = """on: push
jobs:
  long:
    runs-on: %s
    steps:
      - name: prints
        run: %s
      - name: after
        run: echo after-cancel-never
""" % (LABEL, printing("c", 300))


def sc_cancel(g, r, tmp):
    g.repo("cancel", {"c.yml": CANCEL})
    run = g.the_run("cancel")
    if not run:
        return
    num = run["run_number"]

    # Printing: seen in the stored log (where Gitea's page shows it is the live scenario's).
    jobs = wait_until(lambda: g.jobs("cancel", run["id"]), 30, "the cancel run's job")
    if not jobs or not wait_until(lambda: "c-5" in stored_lines(g.job_log("cancel", jobs[0]["id"])), 60,
                                  "the step to print"):
        return
    mark = len(r.log_text())
    t0 = time.time()
    g.cancel("cancel", num)
    seen = wait_until(lambda: "the server says it is" in r.log_text()[mark:], 30, "runnerd to see the cancel")
    if seen:
        line = next(x for x in r.log_text()[mark:].splitlines() if "the server says it is" in x)
        lat = log_time(line) - t0
        print("  cancel: runnerd acted on the cancel %.2f s after it was made" % lat, flush=True)
        check(lat <= 3.0, "cancel: acted on within 3 s (%.2f s)" % lat)
    job = g.jobs("cancel", run["id"])[0]
    done = wait_until(lambda: "job finished" in r.log_text()[mark:], 30, "the cancelled job to end in runnerd")
    if done:
        fin = [x for x in r.log_text()[mark:].splitlines() if "job finished" in x]
        check("cancelled" in fin[0].lower(), "cancel: runnerd ends the job as cancelled: %s" % fin[0])
        print("  cancel: the job ended in runnerd %.2f s after the cancel" % (log_time(fin[0]) - t0), flush=True)
        tl = [x for x in r.tasks().splitlines() if "cancel" in x and "ci/cancel" in x or re.search(r"\bcancelled\b", x)]
        check(tl, "cancel: runnerctl tasks says cancelled:\n%s" % r.tasks())
    log = wait_until(lambda: (lambda t: t if "Job was cancelled" in t or "Job failed" in t else None)(
        g.job_log("cancel", job["id"])), 30, "the cancelled job's log in Gitea")
    if log:
        lines = stored_lines(log)
        check(not any("Job succeeded" in x for x in lines), "cancel: Gitea's log does not say the job succeeded")
        check("after-cancel-never" not in lines, "cancel: the step after the cancel did not run")
        stamps = [x for x in log.splitlines() if re.search(r"Z c-\d+$", x)]
        if check(stamps and log_time(stamps[-1]), "cancel: the step's lines in Gitea's log: %s" % log.splitlines()[-5:]):
            last = log_time(stamps[-1])
            print("  cancel: the step's last line was printed %.2f s after the cancel" % (last - t0), flush=True)
    j = g.jobs("cancel", run["id"])[0]
    check(j["conclusion"] == "cancelled", "cancel: Gitea says cancelled: %s" % j["conclusion"])


CRASH = """on: push
jobs:
  crash:
    runs-on: %s
    steps:
      - name: numbered
        run: %s
""" % (LABEL, printing("n", 180, "0.25"))


def sc_crash(g, r, tmp):
    g.repo("crash", {"c.yml": CRASH})
    run = g.the_run("crash")
    if not run:
        return
    num = run["run_number"]

    def printed(k):
        try:
            v = g.view("crash", num, 0, [{"step": 1, "cursor": 0, "expanded": True}])
        except (OSError, urllib.error.URLError):
            return None
        ls = [sl for sl in v["logs"]["stepsLog"] if sl["step"] == 1]
        return ls and len(ls[0]["lines"]) >= k
    if not wait_until(lambda: printed(15), 60, "the numbered step to print"):
        return
    r.kill9()
    print("  crash: runnerd killed with SIGKILL", flush=True)
    time.sleep(2)
    r.start()
    if not wait_until(lambda: printed(60), 60, "the numbered step to print again after the restart"):
        return
    g.kill()
    print("  crash: gitea killed; down for 20 s", flush=True)
    time.sleep(20)
    g.restart()
    g.logged_in = False
    print("  crash: gitea restarted", flush=True)
    jobs = g.all_jobs_done("crash", run["id"], 120)
    if not jobs:
        return
    check(jobs[0]["conclusion"] == "success", "crash: the job succeeds: %s" % jobs[0]["conclusion"])
    lines = stored_lines(g.job_log("crash", jobs[0]["id"]))
    nums = [x for x in lines if re.match(r"n-(\d+|end)$", x)]
    want = ["n-%d" % i for i in range(1, 181)] + ["n-end"]
    missing = [x for x in want if x not in nums]
    dup = sorted(set(x for x in nums if nums.count(x) > 1))
    check(nums == want, "crash: every line exactly once, in order, in Gitea's stored log "
                        "(%d lines, missing %s, twice %s)" % (len(nums), missing[:5], dup[:5]))
    v = g.view("crash", num, 0, [{"step": 1, "cursor": 0, "expanded": True}])
    ls = [l["message"] for sl in v["logs"]["stepsLog"] if sl["step"] == 1 for l in sl["lines"]]
    check([x for x in ls if x.startswith("n-")] == want, "crash: the step's lines under it in the job page (%d)" % len(ls))


SCENARIOS = [("register", sc_register), ("basic", sc_basic), ("live", sc_live), ("cancel", sc_cancel),
             ("crash", sc_crash)]


def suite(prefix, kind, runner, scenarios, cleanup):
    """The main() of a suite against a real Gitea: skipped (exit 0, saying why) without the
    shared Gitea; builds the `kind` test image and pins it by its ID; in a fresh directory
    prefix* starts Gitea and runner(g, tmp, image) (a Runner), runs the (name, fn) scenarios as
    fn(g, r, tmp) (those named on the command line, and always "register": the others need its
    runner; a scenario that raises is a failure, not a crash of the suite), prints the end of
    runnerd's log if anything failed, stops runnerd (it must exit 0) and Gitea, then runs
    cleanup(r, tmp) (r is None if it was never made) and removes the directory. Returns the exit
    status."""
    only = sys.argv[1:]
    start_sh = os.path.join(shared_dir(), "gitea", "start.sh")
    if not os.path.exists(start_sh):
        print("skipped: no real Gitea to test against (%s is absent; set RUNNERD_SHARED_DIR)" % start_sh)
        return 0
    image, err = base.test_image(kind)
    if image is None:
        print("building the %s test image failed:" % kind, err)
        return 1
    image = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image],
                           capture_output=True, text=True).stdout.strip() or image  # pinned
    tmp = tempfile.mkdtemp(prefix=prefix)
    g = r = None
    try:
        t0 = time.monotonic()
        g = Gitea(tmp)
        print("gitea up at %s in %.1fs" % (g.url, time.monotonic() - t0), flush=True)
        r = runner(g, tmp, image)
        r.start()
        for name, fn in scenarios:
            if only and name not in only and name != "register":
                continue
            print("scenario", name, flush=True)
            before = len(base.failures)
            t1 = time.monotonic()
            try:
                fn(g, r, tmp)
            except Exception as e:  # a broken scenario is a failure, not a crash of the suite
                import traceback
                traceback.print_exc()
                check(False, "%s: %r" % (name, e))
            print("  %s in %.1fs" % ("ok" if len(base.failures) == before else "FAILED", time.monotonic() - t1), flush=True)
        if base.failures and r:
            print("---- runnerd's log (end)")
            print(r.log_text()[-8000:])
    finally:
        if r and r.proc:
            check(r.stop() == 0, "runnerd exits 0 on SIGTERM")
        if g:
            g.stop()
        cleanup(r, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return base.summary()


def owner_leftovers(r, tmp):
    """No container, network or volume carries runnerd's owner label (any that does is removed)."""
    if not r:
        return
    for kind in ("container", "network", "volume"):
        ids = subprocess.run(["docker", kind, "ls", "-q"] + (["-a"] if kind == "container" else []) +
                             ["--filter", "label=%s=%s" % (base.OWNER_LABEL, r.owner)],
                             capture_output=True, text=True).stdout.split()
        check(not ids, "no %s left by runnerd: %s" % (kind, ids))
        for i in ids:
            subprocess.run(["docker", kind, "rm", "-f", i], capture_output=True)


def main():
    return suite("runnerd-e2e-gitea-", "busybox", Runner, SCENARIOS, owner_leftovers)


if __name__ == "__main__":
    sys.exit(main())
