#!/usr/bin/env python3
"""End-to-end tests of per-label executor settings (runnerd.labels, issue 5): the real
`runnerctl register` and `runnerd` against the Gitea double and the real Docker engine.

No GPU exists here, so GPU jobs go through tests/servers/engineproxy.py, a proxy in front of the
real engine that records what each job container is created with and, in `grant` mode, accepts
the DeviceRequests the way an engine with the NVIDIA toolkit would (in `refuse` mode the real
engine refuses them with its own message).

Scenarios:
  gpu_exclusive  2 GPUs, capacity 4, 4 GPU jobs: each gets its own GPU by UUID, the exact
                 DeviceRequests and NVIDIA_* env, never two jobs on one GPU at the same time
  gpu_refused    an engine without GPU support: the job fails saying so, the GPU is released
  gpu_crash      kill -9 while a job holds the only GPU: after the restart the GPU stays with
                 that job until it ends; the next GPU job waits for it
  no_gpus        a GPU runner on a host without GPUs declares nothing and takes no job
  limits         memory, pids and CPU limits reach the job container and a service container
                 (in their own cgroups); neither container.options nor the service's options
                 can lift them; a job without GPUs sees NVIDIA_VISIBLE_DEVICES=void
  socket         docker: socket: a step builds an image with the host engine and runs it; a label
                 without it has no socket
  dind           docker: dind: the refusal on an engine that refuses privileged sidecars
  dind_caps      docker: dind with the caps recipe: a job builds and runs an image in its own
                 engine; the sidecar gets the label's limits
  badconfig      mistakes in runnerd.labels stop runnerd with FILE:LINE:COL and status 2

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `labels.py NAME...`."""
import json
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402  (the Gitea double wrapper and helpers)

check, wait_until, rows_of, final_task = base.check, base.wait_until, base.rows_of, base.final_task
SRC, RUNNERCTL, RUNNERD = base.SRC, base.RUNNERCTL, base.RUNNERD
LIVE = []  # processes a scenario started: killed after it, however it ended
GPUS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]


class Proxy:
    def __init__(self, tmp, mode, name=None):
        self.sock = os.path.join(tmp, "engine-%s.sock" % (name or mode))
        self.record = os.path.join(tmp, "creates-%s.jsonl" % (name or mode))
        self.proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "servers", "engineproxy.py"),
                                      self.sock, "/var/run/docker.sock", self.record, mode],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        LIVE.append(self.proc)
        check(self.proc.stdout.readline().strip() == "ready", "the engine proxy starts")

    def creates(self):
        if not os.path.exists(self.record):
            return []
        with open(self.record) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Runner(base.Runner):
    """A runnerd with a CPU identity (label matric-builder) and optionally a GPU identity; the
    rest (start, wait, stop, logs) is lib.py's Runner."""
    live = LIVE

    def __init__(self, d, tmp, name, config, gpu_labels=(), cpu_labels=("matric-builder",), env=None):
        self.d = d
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state.db")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("runner:\n  capacity: 4\n  fetch_interval: 1s\n  shutdown_timeout: 30s\n" + config)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.env.setdefault("RUNNERD_NVIDIA_SMI", "/bin/false")
        self.env.setdefault("RUNNERD_NVIDIA_PROC", os.path.join(self.dir, "no-proc"))
        for labels, gpu in ((cpu_labels, False), (gpu_labels, True)):
            if not labels:
                continue
            token = d.admin("token")["token"]
            args = [RUNNERCTL, "register", "--no-interactive", "--instance", d.url, "--token", token,
                    "--name", name + ("-gpu" if gpu else ""), "--state", self.state]
            for l in labels:
                args += ["--label", l]
            if gpu:
                args.append("--gpu")
            r = subprocess.run(args, capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, "register %s: %s" % (name, r.stderr.strip()))
        self.proc = None
        self.logs = 0
        self.owner = "runnerd@%s:%s" % (os.uname().nodename, os.path.realpath(self.state))

    def gpus_held(self):
        import sqlite3
        db = sqlite3.connect(self.state)
        try:
            return dict(db.execute("SELECT uuid, task_id FROM gpus").fetchall())
        finally:
            db.close()



def enqueue(d, steps, runs_on="matric-builder", **kw):
    body = {"runsOn": [runs_on], "steps": steps}
    body.update(kw)
    return d.admin("enqueue", body)["jobId"]


def gpu_config(image, extra=""):
    return ("runnerd:\n  fetch_interval_max: 1s\n  gpus:\n" + "".join("    - %s\n" % g for g in GPUS[:2]) +
            "  labels:\n    matric-builder:\n      image: %s\n"
            "    matric-builder-gpu:\n      image: %s\n      gpus: 1\n%s" % (image, image, extra))


def job_rows(d, job):
    t = d.task_of_job(job)
    return rows_of(t) if t else []


# ---------------------------------------------------------------- scenarios

def sc_gpu_exclusive(d, tmp, image):
    px = Proxy(tmp, "grant")
    cfg = gpu_config(image).replace("gpus:\n    - %s\n    - %s\n" % (GPUS[0], GPUS[1]),
                                    "gpus:\n    - %s\n    - %s\n" % (GPUS[0], GPUS[1]))
    r = Runner(d, tmp, "gpuex", cfg, gpu_labels=("matric-builder-gpu",),
               env={"DOCKER_HOST": "unix://" + px.sock})
    r.start()
    step = ('echo "gpu=$NVIDIA_VISIBLE_DEVICES caps=$NVIDIA_DRIVER_CAPABILITIES"; '
            'echo "t0=$(date +%s)"; sleep 3; echo "t1=$(date +%s)"')
    jobs = [enqueue(d, [{"name": "use", "run": step}], runs_on="matric-builder-gpu") for _ in range(4)]
    tasks = [final_task(d, j, 120) for j in jobs]
    spans = []
    for j, t in zip(jobs, tasks):
        if t is None:
            continue
        check(t["status"] == "success", "gpu_exclusive: job %s %s: %s" % (j, t["status"], rows_of(t)[-6:]))
        rows = rows_of(t)
        g = [x.split()[0][4:] for x in rows if x.startswith("gpu=")]
        t0 = [int(x[3:]) for x in rows if x.startswith("t0=")]
        t1 = [int(x[3:]) for x in rows if x.startswith("t1=")]
        check(len(g) == 1 and g[0] in GPUS, "gpu_exclusive: job %s saw one GPU of the inventory: %s" % (j, g))
        check(any("caps=compute,utility" in x for x in rows), "gpu_exclusive: driver capabilities: %s" % rows)
        check(any(x.startswith("GPU(s) for this job: GPU-") for x in rows), "gpu_exclusive: the grant is logged")
        if g and t0 and t1:
            spans.append((g[0], t0[0], t1[0]))
    for i in range(len(spans)):
        for k in range(i + 1, len(spans)):
            a, b = spans[i], spans[k]
            if a[0] == b[0]:
                check(a[2] <= b[1] or b[2] <= a[1], "gpu_exclusive: two jobs held %s at once: %s %s" % (a[0], a, b))
    check(len({s[0] for s in spans}) == 2, "gpu_exclusive: both GPUs were used: %s" % spans)
    creates = [c for c in px.creates() if c["DeviceRequests"]]
    check(len(creates) == 4, "gpu_exclusive: 4 job containers asked for GPUs: %d" % len(creates))
    for c in creates:
        dr = c["DeviceRequests"]
        check(len(dr) == 1 and dr[0].get("Driver") == "nvidia" and dr[0].get("Count") == 0 and
              len(dr[0].get("DeviceIDs") or []) == 1 and dr[0]["DeviceIDs"][0] in GPUS and
              dr[0].get("Capabilities") == [["gpu", "compute", "utility"]] and dr[0].get("Options") == {},
              "gpu_exclusive: the exact DeviceRequests: %s" % dr)
        env = dict(e.split("=", 1) for e in c["Env"])
        check(env.get("NVIDIA_VISIBLE_DEVICES") == (dr[0].get("DeviceIDs") or ["?"])[0],
              "gpu_exclusive: NVIDIA_VISIBLE_DEVICES matches the grant: %s" % env.get("NVIDIA_VISIBLE_DEVICES"))
        check(not c["Privileged"], "gpu_exclusive: never privileged")
    check(r.gpus_held() == {}, "gpu_exclusive: every GPU released: %s" % r.gpus_held())
    check(r.stop() == 0, "gpu_exclusive: runnerd exits 0")
    px.stop()


def sc_gpu_refused(d, tmp, image):
    px = Proxy(tmp, "refuse")
    cfg = gpu_config(image).replace("    - %s\n" % GPUS[1], "")
    r = Runner(d, tmp, "gpuref", cfg, gpu_labels=("matric-builder-gpu",),
               env={"DOCKER_HOST": "unix://" + px.sock})
    r.start()
    for n in range(2):  # the second gets the GPU back: it was released
        j = enqueue(d, [{"name": "use", "run": "echo never"}], runs_on="matric-builder-gpu")
        t = final_task(d, j, 90)
        if t is None:
            return
        rows = rows_of(t)
        check(t["status"] == "failure", "gpu_refused: job %d fails: %s" % (n, t["status"]))
        check(any("GPU(s) for this job: %s" % GPUS[0] in x for x in rows), "gpu_refused: job %d got the GPU: %s" % (n, rows))
        check(any("cannot provide the GPUs" in x and "could not select device driver" in x and
                  "NVIDIA container toolkit" in x for x in rows),
              "gpu_refused: the engine's refusal in plain words: %s" % rows[-5:])
        check("never" not in rows, "gpu_refused: no step ran")
    check(r.gpus_held() == {}, "gpu_refused: GPU released: %s" % r.gpus_held())
    base.check_no_leftovers(r, "gpu_refused")
    check(r.stop() == 0, "gpu_refused: runnerd exits 0")
    px.stop()


def sc_gpu_crash(d, tmp, image):
    px = Proxy(tmp, "grant", "crash")
    cfg = gpu_config(image).replace("    - %s\n" % GPUS[1], "")
    r = Runner(d, tmp, "gpucrash", cfg, gpu_labels=("matric-builder-gpu",),
               env={"DOCKER_HOST": "unix://" + px.sock})
    r.start()
    j1 = enqueue(d, [{"name": "hold", "run": 'echo "t0=$(date +%s)"; sleep 8; echo "t1=$(date +%s)"'}],
                 runs_on="matric-builder-gpu")
    wait_until(lambda: any(x.startswith("t0=") for x in job_rows(d, j1)) or None, 60, "job 1 running")
    r.proc.kill()
    r.wait(10)
    held = r.gpus_held()
    check(list(held) == [GPUS[0]], "gpu_crash: the grant survived the crash in the state file: %s" % held)
    j2 = enqueue(d, [{"name": "next", "run": 'echo "t0=$(date +%s)"'}], runs_on="matric-builder-gpu")
    r.start()
    t1, t2 = final_task(d, j1, 90), final_task(d, j2, 90)
    if t1 is None or t2 is None:
        return
    check(t1["status"] == "success" and t2["status"] == "success", "gpu_crash: both succeed: %s %s" % (t1["status"], t2["status"]))
    end1 = [int(x[3:]) for x in rows_of(t1) if x.startswith("t1=")]
    start2 = [int(x[3:]) for x in rows_of(t2) if x.startswith("t0=")]
    check(end1 and start2 and start2[0] >= end1[0], "gpu_crash: job 2 started after job 1 let the GPU go: %s %s" % (end1, start2))
    check(r.gpus_held() == {}, "gpu_crash: released at the end: %s" % r.gpus_held())
    check(r.stop() == 0, "gpu_crash: runnerd exits 0")
    px.stop()


def sc_no_gpus(d, tmp, image):
    cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder-gpu:\n      image: %s\n"
           "      gpus: 1\n" % image)
    r = Runner(d, tmp, "nogpu", cfg, gpu_labels=("matric-builder-gpu",), cpu_labels=("matric-builder",))
    r.start()
    j = enqueue(d, [{"name": "x", "run": "echo hi"}], runs_on="matric-builder-gpu")
    wait_until(lambda: "GPU runner's labels are not declared" in r.log_text() or None, 30, "the warning")
    c = enqueue(d, [{"name": "x", "run": "echo cpu-ok"}])
    t = final_task(d, c, 60)
    check(t is not None and t["status"] == "success", "no_gpus: the CPU runner still works")
    check(d.task_of_job(j) is None, "no_gpus: nobody took the GPU job")
    gpu_runner = [x for x in d.admin("state")["runners"] if x.get("name") == "nogpu-gpu"]
    check(gpu_runner and not gpu_runner[0].get("declares"),
          "no_gpus: the GPU runner declared nothing: %s" % gpu_runner)
    check(r.stop() == 0, "no_gpus: runnerd exits 0")
    d.admin("cancel", {"jobId": j})


# A container's own limits as "mem=BYTES pids=N cpu=QUOTA/PERIOD", from cgroup v2 or v1 files.
CGROUP_LIMITS = ("c=/sys/fs/cgroup; if [ -f $c/memory.max ]; then echo mem=$(cat $c/memory.max) "
                 "pids=$(cat $c/pids.max) cpu=$(tr ' ' / < $c/cpu.max); else "
                 "echo mem=$(cat $c/memory/memory.limit_in_bytes) pids=$(cat $c/pids/pids.max) "
                 "cpu=$(cat $c/cpu/cpu.cfs_quota_us)/$(cat $c/cpu/cpu.cfs_period_us); fi")


def sc_limits(d, tmp, image):
    # A service that serves its own cgroup limits over HTTP to the job's steps.
    ctx = os.path.join(tmp, "limits-svc")
    os.makedirs(ctx)
    svc_image = "runnerd-e2e-limits-svc:%d" % os.getpid()
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM runnerd-test/busybox:latest\nRUN mkdir /www\nCMD [\"sh\", \"-c\", %s]\n" % json.dumps(
            "(%s) > /www/limits; exec httpd -f -p 8080 -h /www" % CGROUP_LIMITS))
    b = subprocess.run(["docker", "build", "-q", "-t", svc_image, ctx], capture_output=True, text=True)
    if not check(b.returncode == 0, "limits: the service image builds offline: %s" % b.stderr[-500:]):
        return
    cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n      image: %s\n"
           "      memory: 96m\n      pids: 300\n      cpus: 0.5\n"
           "container:\n  options: --memory 2g --pids-limit 5000\n" % image)
    r = Runner(d, tmp, "limits", cfg)
    r.start()
    wf = ("name: CI\non: push\njobs:\n  build:\n    runs-on: matric-builder\n    services:\n"
          "      svc:\n        image: %s\n"
          "        options: --memory 2g --memory-swap 4g --pids-limit 5000 --cpus 4\n    steps:\n"
          "      - name: look\n        run: |\n"
          "          cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
          "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>&1\n"
          "          echo nv=$NVIDIA_VISIBLE_DEVICES\n"
          "      - name: service\n        run: |\n"
          "          for i in $(seq 1 40); do wget -q -O - http://svc:8080/limits 2>/dev/null | sed 's/^/svc /' | grep . && break; sleep 0.25; done\n"
          % svc_image)
    j = enqueue(d, [{"name": "look", "run": "true"}], job="build", workflowPayload=wf)
    t = final_task(d, j, 90)
    subprocess.run(["docker", "rmi", "-f", svc_image], capture_output=True)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "success", "limits: %s %s" % (t["status"], rows[-5:]))
    check(str(96 << 20) in rows, "limits: memory 96m reaches the container (not the options' 2g): %s" % rows)
    check("300" in rows, "limits: pids 300: %s" % rows)
    check("50000" in rows and "100000" in rows, "limits: half a CPU: %s" % rows)
    check("nv=void" in rows, "limits: no GPU for a CPU job: %s" % rows)
    check("svc mem=%d pids=300 cpu=50000/100000" % (96 << 20) in rows,
          "limits: the service container gets the label's limits, not its options' 2g/5000/4: %s" % rows[-6:])
    base.check_no_leftovers(r, "limits")
    check(r.stop() == 0, "limits: runnerd exits 0")


def sc_socket(d, tmp, image):
    cli, err = base.test_image("docker-cli")
    if cli is None:
        check(False, "socket: building the docker-cli image: %s" % err[-500:])
        return
    cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n      image: %s\n"
           "      docker: socket\n    plain:\n      image: %s\n" % (cli, cli))
    r = Runner(d, tmp, "socket", cfg, cpu_labels=("matric-builder", "plain"))
    r.start()
    tag = "runnerd-e2e-built:%d" % os.getpid()
    j = enqueue(d, [{"name": "build", "run":
                     "mkdir ctx && printf 'FROM %s\\nRUN echo built-inside > /built\\nCMD [\"cat\", \"/built\"]\\n' > ctx/Dockerfile && "
                     "docker build -q --label runnerd-e2e=1 -t %s ctx && docker run --rm %s && echo host=$DOCKER_HOST" % (image, tag, tag)}])
    t = final_task(d, j, 120)
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "success", "socket: docker build + run in the job: %s %s" % (t["status"], rows[-8:]))
    check("built-inside" in rows, "socket: the built image ran: %s" % rows[-8:])
    check("host=unix:///var/run/docker.sock" in rows, "socket: DOCKER_HOST: %s" % rows[-3:])
    j = enqueue(d, [{"name": "none", "run": "test -S /var/run/docker.sock && echo has-socket || echo no-socket"}],
                runs_on="plain")
    t = final_task(d, j, 60)
    check(t is not None and "no-socket" in rows_of(t), "socket: a label without docker: socket has none")
    base.check_no_leftovers(r, "socket")
    check(r.stop() == 0, "socket: runnerd exits 0")


def sc_dind(d, tmp, image):
    cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n      image: %s\n"
           "      docker: dind\n      dind_image: %s\n" % (image, image))
    r = Runner(d, tmp, "dind", cfg)
    r.start()
    j = enqueue(d, [{"name": "x", "run": "echo never"}])
    t = final_task(d, j, 120)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "failure", "dind: fails on this engine: %s" % t["status"])
    check(any("dind" in x and ("privileges" in x or "refused" in x) for x in rows),
          "dind: says the engine refused the sidecar's privileges: %s" % rows[-5:])
    check("never" not in rows, "dind: no step ran")
    base.check_no_leftovers(r, "dind")
    check(r.stop() == 0, "dind: runnerd exits 0")


def build_image(kind):
    image, err = base.test_image(kind)
    if image is None:
        check(False, "building the %s image: %s" % (kind, err[-500:]))
    return image


def sc_dind_caps(d, tmp, image):
    cli, dind = build_image("docker-cli"), build_image("dind")
    if not cli or not dind:
        return
    cfg = ("runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n      image: %s\n"
           "      docker: dind\n      dind_image: %s\n      dind_privileges: caps\n"
           "      memory: 1g\n      pids: 2048\n" % (cli, dind))
    r = Runner(d, tmp, "dindcaps", cfg)
    r.start()
    sidecar = []

    def sidecar_limits():
        ids = subprocess.run(["docker", "ps", "-q", "--filter", "label=%s=%s" % (base.OWNER_LABEL, r.owner),
                              "--filter", "label=io.runnerd.role=dind"], capture_output=True, text=True).stdout.split()
        for i in ids:
            out = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                                  "{{.HostConfig.PidsLimit}}", i], capture_output=True, text=True).stdout.strip()
            if out:
                sidecar.append(out)
        return sidecar or None
    j = enqueue(d, [{"name": "inner", "run":
                     "echo host=$DOCKER_HOST tls=$DOCKER_TLS_VERIFY; ls /certs/client; "
                     "docker info --format 'driver={{.Driver}}'; mkdir c && cp /bin/busybox c/ && "
                     "printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nCMD [\"/bin/busybox\", \"echo\", \"hello-inner\"]\\n' > c/Dockerfile && "
                     "docker build -q -t inner c >/dev/null && docker run --rm --network none inner"}])
    wait_until(sidecar_limits, 120, "the dind sidecar")
    check(sidecar[:1] == ["1073741824 1073741824 2048"],
          "dind_caps: the sidecar gets the label's limits (1g, no swap on top, 2048 pids): %s" % sidecar)
    t = final_task(d, j, 180)
    if t is None:
        return
    rows = rows_of(t)
    check(t["status"] == "success", "dind_caps: the job succeeds: %s %s" % (t["status"], rows[-10:]))
    check("host=tcp://docker:2376 tls=1" in rows, "dind_caps: DOCKER_HOST and TLS: %s" % rows[-12:])
    check("hello-inner" in rows, "dind_caps: built and ran an image in its own daemon: %s" % rows[-6:])
    check("key.pem" in rows and "ca.pem" in rows and "ca-key.pem" not in rows, "dind_caps: client certs only: %s" % rows[-12:])
    host_imgs = subprocess.run(["docker", "image", "ls", "-q", "inner"], capture_output=True, text=True).stdout.split()
    check(not host_imgs, "dind_caps: the inner image is not in the host's store")
    base.check_no_leftovers(r, "dind_caps")
    check(r.stop() == 0, "dind_caps: runnerd exits 0")


def sc_exec_profile(d, tmp, image):
    """runnerctl exec -c: the label's settings (image, limits) apply locally too."""
    wd = os.path.join(tmp, "execprof")
    os.makedirs(wd)
    with open(os.path.join(wd, "cfg.yaml"), "w") as f:
        f.write("runnerd:\n  labels:\n    matric-builder:\n      image: %s\n      memory: 80m\n      pids: 200\n" % image)
    with open(os.path.join(wd, "wf.yml"), "w") as f:
        f.write("on: push\njobs:\n  look:\n    runs-on: matric-builder\n    steps:\n"
                "      - run: cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max\n")
    p = subprocess.run([os.path.abspath(RUNNERCTL), "exec", "-c", "cfg.yaml", "-C", wd, "wf.yml"], cwd=wd,
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "exec_profile: runnerctl exec succeeds: %s %s" % (p.stdout[-800:], p.stderr[-400:]))
    check(str(80 << 20) in p.stdout and "200" in p.stdout, "exec_profile: limits applied: %s" % p.stdout[-800:])


def sc_reload(d, tmp, image):
    """SIGHUP: a configuration that validates replaces the old one; one that does not is refused."""
    head = "runner:\n  capacity: 4\n  fetch_interval: 1s\n  shutdown_timeout: 30s\n"
    good = "runnerd:\n  fetch_interval_max: 1s\n  labels:\n    matric-builder:\n      image: %s\n      memory: %s\n"
    r = Runner(d, tmp, "reload", good % (image, "64m"))
    r.start()
    look = [{"name": "mem", "run": "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"}]

    def limit():
        t = final_task(d, enqueue(d, look), 60)
        return rows_of(t) if t else []
    check(str(64 << 20) in limit(), "reload: 64m at first")
    with open(r.config, "w") as f:
        f.write(head + good % (image, "64m") + "      gpus: 1\n")
    r.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: keeping the current configuration" in r.log_text() or None, 20, "the refusal")
    check("%s:11:13: runnerd.labels.matric-builder.gpus" % r.config in r.log_text(),
          "reload: the refusal names file:line:col: %s" % r.log_text()[-600:])
    check(str(64 << 20) in limit(), "reload: still 64m after a bad reload")
    with open(r.config, "w") as f:
        f.write(head + good % (image, "128m"))
    r.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in r.log_text() or None, 20, "the reload")
    check(str(128 << 20) in limit(), "reload: 128m after a good reload")
    check(r.stop() == 0, "reload: runnerd exits 0")


def sc_badconfig(d, tmp, image):
    r = Runner(d, tmp, "badcfg", "", gpu_labels=("matric-builder-gpu",))
    cases = [
        ("runnerd:\n  labels:\n    matric-builder:\n      gpus: 1\n", "4:13: runnerd.labels.matric-builder.gpus: this label belongs to the CPU runner"),
        ("runnerd:\n  gpus: [GPU-a]\n  labels:\n    matric-builder-gpu:\n      gpus: 2\n",
         "5:13: runnerd.labels.matric-builder-gpu.gpus: 2 GPU(s) per job, but this host has 1"),
        ("runnerd:\n  labels:\n    matric-builder:\n      memory: lots\n", "4:15: runnerd.labels.matric-builder.memory: expected a size"),
        ("runnerd:\n  labels:\n    matric-builder:\n      imgae: x\n", "4:7: runnerd.labels.matric-builder: unknown key 'imgae'"),
        ("runnerd:\n  labels:\n    matric-builder:\n      image: busybox@sha256:123\n", "4:14: runnerd.labels.matric-builder.image: a digest pin"),
        ("runnerd:\n  labels:\n    matric-builder:\n      docker: dind\n", "3:5: runnerd.labels.matric-builder: docker: dind needs dind_image"),
        ("runnerd:\n  http: 0.0.0.0:9464\n", "runnerd.http"),
    ]
    for yaml, want in cases:
        path = os.path.join(r.dir, "bad.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        p = subprocess.run([RUNNERD, "-c", path, "--state", r.state], capture_output=True, text=True,
                           timeout=30, env=r.env)
        check(p.returncode == 2 and want in p.stderr and (path in p.stderr),
              "badconfig: %r -> %s %r" % (want, p.returncode, p.stderr))


def http_get(port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e), None


def sc_status(d, tmp, image):
    px = Proxy(tmp, "grant", "status")
    port = base.free_port()
    cfg = gpu_config(image).replace("    - %s\n" % GPUS[1], "").replace(
        "runnerd:\n", "runnerd:\n  http: 127.0.0.1:%d\n" % port, 1)
    r = Runner(d, tmp, "status", cfg, gpu_labels=("matric-builder-gpu",),
               env={"DOCKER_HOST": "unix://" + px.sock})
    r.start()
    st = wait_until(lambda: (lambda x: x if x[0] == 200 else None)(http_get(port, "/readyz")) if
                    os.path.exists(r.state) else None, 30, "/readyz 200")
    check(st and st[1] == "ready\n", "status: ready at first: %s" % (st,))
    h = http_get(port, "/healthz")
    check(h[0] == 200, "status: /healthz: %s" % (h,))
    j = enqueue(d, [{"name": "hold", "run": "echo held; sleep 4"}], runs_on="matric-builder-gpu")
    wait_until(lambda: "held" in job_rows(d, j) or None, 60, "the GPU job running")
    busy = http_get(port, "/readyz")
    check(busy[0] == 503 and "no free GPU" in busy[1], "status: not ready while the only GPU is held: %s" % (busy,))
    m = http_get(port, "/metrics")
    check(m[0] == 200 and m[2].startswith("text/plain; version=0.0.4"), "status: /metrics: %s" % (m[:1] + m[2:],))
    check('runnerd_gpu_allocated{gpu="%s"} 1' % GPUS[0] in m[1], "status: the GPU shows as held")
    check('runnerd_jobs_running{label="matric-builder-gpu"} 1' in m[1], "status: one job running")
    t = final_task(d, j, 60)
    check(t is not None and t["status"] == "success", "status: the job succeeds")
    wait_until(lambda: http_get(port, "/readyz")[0] == 200 or None, 30, "ready again")
    # the slot frees once Gitea has heard the end
    m = wait_until(lambda: (lambda x: x if 'runnerd_slots_free{class="gpu"} 4' in x else None)(
        http_get(port, "/metrics")[1]), 30, "the slot free again")
    for want in ('runnerd_jobs_total{label="matric-builder-gpu",result="success"} 1',
                 'runnerd_gpu_allocated{gpu="%s"} 0' % GPUS[0],
                 'runnerd_gpu_allocations_total{gpu="%s"} 1' % GPUS[0],
                 'runnerd_jobs_running{label="matric-builder-gpu"} 0',
                 'runnerd_step_duration_seconds_count{label="matric-builder-gpu"} ',
                 'runnerd_slots_free{class="gpu"} 4'):
        check(want in m, "status: metrics have %r:\n%s" % (want, m))
    spooled = [l for l in m.splitlines() if l.startswith("runnerd_log_rows_spooled_total ")]
    sent = [l for l in m.splitlines() if l.startswith("runnerd_log_rows_sent_total ")]
    check(spooled and sent and float(spooled[0].split()[1]) > 0 and float(sent[0].split()[1]) > 0,
          "status: log rows counted: %s %s" % (spooled, sent))
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=m, capture_output=True, text=True)
        check(p.returncode == 0, "status: promtool check metrics: %s %s" % (p.stdout, p.stderr))
    else:
        check(not os.environ.get("CI"), "status: promtool is missing in CI")
    nf = http_get(port, "/nope")
    check(nf[0] == 404, "status: 404 elsewhere: %s" % (nf,))
    check(r.stop() == 0, "status: runnerd exits 0")
    px.stop()


SCENARIOS = [("gpu_exclusive", sc_gpu_exclusive), ("gpu_refused", sc_gpu_refused), ("gpu_crash", sc_gpu_crash),
             ("no_gpus", sc_no_gpus), ("limits", sc_limits), ("socket", sc_socket), ("dind", sc_dind), ("dind_caps", sc_dind_caps),
             ("status", sc_status), ("exec_profile", sc_exec_profile), ("reload", sc_reload), ("badconfig", sc_badconfig)]


def after(tmp, name):
    base.kill_live(LIVE)
    del LIVE[:]


def logs(tmp, name):
    return base.runnerd_logs(tmp, lambda root, f: os.path.basename(root).startswith(name.split("_")[0][:3]),
                             lambda root, f: "%s/%s" % (os.path.basename(root), f))


def main():
    return base.suite("runnerd-e2e-labels-", SCENARIOS, after, logs, pin=True)


if __name__ == "__main__":
    sys.exit(main())
