#!/usr/bin/env python3
"""runnerctl exec with the docker executor on the real engine: the offline busybox test image,
the agent as the job container's entrypoint, the workspace copy and --bind, image env and
RUNNER_* in steps, a job `container:`, pinning by image Id (and a wrong pin refused), the
default shell falling back to sh without bash, and no container or network left behind."""
import os
import shutil
import subprocess
import sys
import tempfile

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image; labelled())
T = lib.Tally()
check = T.check


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


IMAGE, err = lib.test_image()
if IMAGE is None:
    print("FAIL building the busybox test image: " + err)
    sys.exit(1)
IMAGE_ID = sh("docker", "image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip()


def leftovers(label="io.runnerd.runner=runnerctl"):
    return lib.labelled(label)


left_behind = []


def run(tmp, wf, *args):
    """Runs runnerctl exec; records anything its run (owner label host:pid) left behind."""
    rc, out, err, r, pid = lib.exec_report(tmp, wf, args)
    left_behind.extend(leftovers("io.runnerd.owner=%s:%d" % (os.uname().nodename, pid)))
    return rc, out, err, r


WF = r"""
on: push
jobs:
  box:
    runs-on: builder
    steps:
      - id: a
        run: |
          echo "pwd=$PWD shell=$0"
          cat data.txt
          echo "os=$RUNNER_OS path=$PATH arch=$RUNNER_ARCH"
          echo "v=1" >> "$GITHUB_OUTPUT"
          touch created-in-container
      - run: echo "got ${{ steps.a.outputs.v }}"
  boxed:
    runs-on: anything
    container:
      image: IMAGE
      env:
        FROM_CONTAINER: yes-it-is
    steps:
      - run: echo "container env $FROM_CONTAINER"
"""

with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "data.txt"), "w") as f:
        f.write("workspace-data\n")
    wf = WF.replace("IMAGE", IMAGE)
    rc, out, err, rep = run(tmp, wf, "-l", "builder=docker://" + IMAGE, "-l", "anything=host")
    check("docker job exit 0", rc == 0, out + err)
    check("workspace copied into the container", "[box]   | pwd=/workspace shell=/var/run/act/workflow/a.sh" in out
          and "[box]   | workspace-data" in out, out)
    check("image env, RUNNER_OS and RUNNER_ARCH", "[box]   | os=Linux path=/bin arch=X64" in out, out)
    check("outputs across steps", "[box]   | got 1" in out, out)
    check("job container: image and env", "[boxed]   | container env yes-it-is" in out, out)
    check("copy, not bind: nothing written back", not os.path.exists(os.path.join(tmp, "created-in-container")))
    check("image resolved to its Id", ("image %s is %s" % (IMAGE, IMAGE_ID[:19])) in out, out)

    rc, out, err, rep = run(tmp, "on: push\njobs:\n  b:\n    runs-on: builder\n    steps:\n"
                            "      - run: touch created-in-container\n",
                            "--bind", "-l", "builder=docker://" + IMAGE_ID)
    check("pinned by Id and --bind", rc == 0 and os.path.exists(os.path.join(tmp, "created-in-container")), out + err)

    wrong = "sha256:" + "0" * 64
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  b:\n    runs-on: builder\n    steps:\n"
                            "      - run: echo never\n", "-l", "builder=docker://" + wrong)
    check("wrong pin fails the job", rc == 1 and "[b]   | never" not in out, out + err)
    check("wrong pin names the image", wrong[:19] in out, out)

    rc, out, err, rep = run(tmp, "on: push\njobs:\n  f:\n    runs-on: builder\n    steps:\n"
                            "      - run: echo out; exit 7\n", "-l", "builder=docker://" + IMAGE)
    check("failing step in a container", rc == 1 and "[f]   error: Process completed with exit code 7." in out, out)

    # hashFiles() computed inside the job container (the agent's hash mode).
    import hashlib
    want = hashlib.sha256(hashlib.sha256(b"workspace-data\n").digest()).hexdigest()
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  hf:\n    runs-on: builder\n    steps:\n"
                            "      - run: echo \"h=${{ hashFiles('data.txt') }}\"\n",
                            "-l", "builder=docker://" + IMAGE)
    check("hashFiles in a container", "[hf]   | h=" + want in out, out + err)

    # Services on the job network, health-checked through options; a docker:// step.
    ctx_dir = os.path.join(tmp, "httpd-image")
    os.mkdir(ctx_dir)
    with open(os.path.join(ctx_dir, "Dockerfile"), "w") as f:
        f.write("FROM %s\nRUN mkdir /www && echo hello-from-service > /www/index.html\n"
                "CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n" % IMAGE)
    b = sh("docker", "build", "-q", "-t", "runnerd-test/httpd:e2e", ctx_dir)
    check("service image built offline", b.returncode == 0, b.stderr)
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  svc:
    runs-on: builder
    container:
      image: IMAGE
      options: --cpus 1 --memory 256m -e FROM_OPTIONS=yes
    services:
      web:
        image: runnerd-test/httpd:e2e
        options: >-
          --health-cmd "wget -q -O /dev/null http://127.0.0.1:8080/"
          --health-interval 1s --health-retries 30
    steps:
      - run: wget -q -O - http://web:8080/
      - run: echo "svc id ${#SVC} opt=$FROM_OPTIONS"
        env:
          SVC: ${{ job.services.web.id }}
      - uses: docker://IMAGE
        id: dk
        with:
          entrypoint: /bin/sh
          args: -c "echo docker-step input=$INPUT_WHO ws=$(cat /workspace/data.txt); echo res=42 >> $GITHUB_OUTPUT; echo FROM_DK=yes >> $GITHUB_ENV"
          who: mona
      - run: echo "dk output=${{ steps.dk.outputs.res }} env=$FROM_DK"
""".replace("IMAGE", IMAGE), "-l", "builder=docker://" + IMAGE)
    check("services: job ok", rc == 0, out + err)
    check("service reachable by its id", "[svc]   | hello-from-service" in out, out)
    check("job.services context and container.options",
          "[svc]   | svc id 64 opt=yes" in out, out)
    check("docker:// step with entrypoint, args, inputs and the workspace",
          "[svc]   | docker-step input=mona ws=workspace-data" in out, out)
    check("docker:// step file commands", "[svc]   | dk output=42 env=yes" in out, out)

    rc, out, err, rep = run(tmp, "on: push\njobs:\n  v:\n    runs-on: builder\n"
                            "    container:\n      image: %s\n      options: -v /:/host\n"
                            "    steps:\n      - run: echo never\n" % IMAGE,
                            "-l", "builder=docker://" + IMAGE)
    check("host volume in options refused", rc == 2 and
          "container.options: -v /:/host: host paths are not allowed for jobs" in err, out + err)

    # github.workspace where the job container's env and options and the job's outputs are
    # evaluated (before the container exists, after the steps): a container job's is /workspace.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  ws:
    runs-on: builder
    container:
      image: IMAGE
      env:
        WS_ENV: ${{ github.workspace }}/env
      options: -e WS_OPT=${{ github.workspace }}/opt
    outputs:
      dir: ${{ github.workspace }}/out
    steps:
      - run: echo "ws env=$WS_ENV opt=$WS_OPT"
  after:
    needs: ws
    runs-on: builder
    steps:
      - run: echo "ws output=${{ needs.ws.outputs.dir }}"
""".replace("IMAGE", IMAGE), "-l", "builder=docker://" + IMAGE)
    check("github.workspace in container env and options",
          rc == 0 and "[ws]   | ws env=/workspace/env opt=/workspace/opt" in out, out + err)
    check("github.workspace in job outputs", "[after]   | ws output=/workspace/out" in out, out + err)

    # The agent on Debian: bash exists, so the unspecified shell is bash -e.
    deb = sh(os.path.join(SRCDIR, "tests/images/build.sh"), "debian")
    check("debian image built", deb.returncode == 0, deb.stderr[-500:])
    if deb.returncode == 0:
        DEB = deb.stdout.strip().splitlines()[-1]
        rc, out, err, rep = run(tmp, "on: push\njobs:\n  d:\n    runs-on: deb\n    steps:\n"
                                "      - run: echo \"bash=${BASH_VERSION:+yes} shell=$0\"\n"
                                "      - run: echo \"$0\"\n        shell: sh\n",
                                "-l", "deb=docker://" + DEB)
        check("debian: default shell is bash", rc == 0 and
              "[d]   | bash=yes shell=/var/run/act/workflow/0" in out, out + err)
        check("debian: explicit sh", "[d]   | /var/run/act/workflow/1.sh" in out, out)

    # Local actions through runnerctl exec, in a container: a node action (inputs, outputs,
    # its post stage after the last step) in the node test image, and a docker action built
    # from a lone Dockerfile read out of the job container.
    node = sh(os.path.join(SRCDIR, "tests/images/build.sh"), "node")
    check("node image built", node.returncode == 0, node.stderr[-500:])
    if node.returncode == 0:
        NODE = node.stdout.strip().splitlines()[-1]
        acts = os.path.join(tmp, ".github", "actions")
        for path, text in {
            "hello/action.yml": "name: hello\ninputs:\n  who:\n    default: you\noutputs:\n  said: {}\n"
                                "runs:\n  using: node20\n  main: main.js\n  post: post.js\n",
            "hello/main.js": "const fs = require('fs');\n"
                             "console.log('node says ' + process.env.INPUT_WHO);\n"
                             "fs.appendFileSync(process.env.GITHUB_OUTPUT, 'said=hi ' + process.env.INPUT_WHO + '\\n');\n",
            "hello/post.js": "console.log('node post');\n",
            "built/Dockerfile": "FROM %s\nCOPY msg.txt /\nENTRYPOINT [\"cat\", \"/msg.txt\"]\n" % IMAGE,
            "built/msg.txt": "built from a Dockerfile\n",
        }.items():
            os.makedirs(os.path.dirname(os.path.join(acts, path)), exist_ok=True)
            with open(os.path.join(acts, path), "w") as f:
                f.write(text)
        try:
            rc, out, err, rep = run(tmp, "on: push\njobs:\n  n:\n    runs-on: nodeimg\n    steps:\n"
                                    "      - id: h\n        uses: ./.github/actions/hello\n        with:\n          who: exec\n"
                                    "      - uses: ./.github/actions/built\n"
                                    "      - run: echo \"last said=${{ steps.h.outputs.said }}\"\n",
                                    "-l", "nodeimg=docker://" + NODE)
            lines = [l for l in out.splitlines() if l.startswith("[n]")]
            at = lambda text: next((i for i, l in enumerate(lines) if l.endswith(text)), -1)
            check("exec: local node action", rc == 0 and at("| node says exec") >= 0, out + err)
            check("exec: local Dockerfile action", at("| built from a Dockerfile") >= 0, out)
            check("exec: node post after the last step",
                  0 <= at("| last said=hi exec") < at("| node post"), out)
            # A job image without node: the action fails saying so, or with runnerd.node_image
            # it runs (main and post) in a container of that image.
            wf = ("on: push\njobs:\n  m:\n    runs-on: builder\n    steps:\n"
                  "      - uses: ./.github/actions/hello\n        with:\n          who: elsewhere\n"
                  "      - run: echo last\n")
            rc, out, err, rep = run(tmp, wf, "-l", "builder=docker://" + IMAGE)
            check("exec: no node in the job image is a clear error",
                  rc == 1 and "the job image has no node for this node20 action" in out, out + err)
            cfg = os.path.join(tmp, "node.yaml")
            with open(cfg, "w") as f:
                f.write("runnerd:\n  node_image: %s\n" % NODE)
            rc, out, err, rep = run(tmp, wf, "-l", "builder=docker://" + IMAGE, "-c", cfg)
            lines = [l for l in out.splitlines() if l.startswith("[m]")]
            at = lambda text: next((i for i, l in enumerate(lines) if l.endswith(text)), -1)
            check("exec: runnerd.node_image runs the node action",
                  rc == 0 and at("| node says elsewhere") >= 0, out + err)
            check("exec: and its post stage, after the last step", 0 <= at("| last") < at("| node post"), out)
            os.unlink(cfg)
        finally:
            # Only this test's action image: other tests build theirs at the same time.
            ids = sh("docker", "images", "-q", "--filter",
                     "label=io.runnerd.action=./.github/actions/built").stdout.split()
            if ids:
                sh("docker", "rmi", "-f", *sorted(set(ids)))
            shutil.rmtree(os.path.join(tmp, ".github"), ignore_errors=True)

    # A runnerctl killed mid-job leaves its container; the next run sweeps it.
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write("on: push\njobs:\n  k:\n    runs-on: builder\n    steps:\n"
                "      - run: echo started; sleep 120\n")
    proc = subprocess.Popen([RUNNERCTL, "exec", "-C", tmp, "-l", "builder=docker://" + IMAGE, path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if "| started" in line:
            break
    owner = "io.runnerd.owner=%s:%d" % (os.uname().nodename, proc.pid)
    proc.kill()
    proc.communicate()
    left = leftovers(owner)
    check("killed run leaves its container", len(left) >= 2, "%s %s %s" % (owner, left, seen))
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  s:\n    runs-on: builder\n    steps:\n"
                            "      - run: echo swept\n", "-l", "builder=docker://" + IMAGE)
    check("next run sweeps the orphans", rc == 0 and "left by an earlier run that was killed" in out
          and leftovers(owner) == [], out + err)

check("no container, network or volume left by any run", left_behind == [], str(left_behind))
print("%d failed" % T.failures if T.failures else "exec-docker: all checks passed")
sys.exit(1 if T.failures else 0)
