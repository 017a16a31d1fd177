#!/usr/bin/env python3
"""End-to-end tests of checkout and actions (issue 6): the real `runnerctl register` and
`runnerd` against the Gitea double, a local git server (tests/servers/gitserver.py: git's own
http-backend, with a token for private repositories) and the real Docker engine. The task
context points server_url and gitea_default_actions_url at the git server.

Scenarios:
  checkout      the task's exact commit (not the branch head), .git present with the
                credentials persisted; a tag into a sub-path; the mirror reused by a second job;
                a wrong token fails clearly without the token in the log; two jobs at once;
                a private submodule (relative URL) with submodules: true
  node          a remote node action: inputs (with and defaults), outputs, GITHUB_ACTION_PATH,
                its post stage after the last step with the state saved by main
  local         a local node action from the checked-out repository
  docker        a remote docker action (runs.image docker://...) with args from inputs and env
  dockerfile    a remote docker action built from its Dockerfile (in a sub-directory, with
                args from inputs, an output, pre-entrypoint before the first step and
                post-entrypoint after the last), a local one from the checked-out repository
                (synthesised from a lone Dockerfile), a Dockerfile that does not build
  composite     a remote composite action: inputs (with and defaults), an output from a nested
                step, GITHUB_ENV reaching later job steps but not the caller's env:, no secrets
                inside, a script beside action.yml through GITHUB_ACTION_PATH, a nested node
                action with its own inputs and a post stage; a failing composite: later nested
                steps skipped, if: failure() inside runs, the job step fails
  prepost       pre stages before the first step (in step order, with inputs and their
                defaults, state handed to main), pre-if false skips one, post stages in reverse
                order after the last step; a failing pre stage fails the job before any step
  kill9         runnerd killed (SIGKILL) while a step after a node action runs: the restarted
                runnerd resumes the job and still runs the action's post stage; killed inside a
                composite action's nested step: the job resumes inside the composite (its
                steps context, inputs and outputs kept), every row once
  errors        a reference without @ref (at load and at run time), a repository without an
                action.yml, a shortened sha: each fails the step with a message naming it

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `actions.py NAME...`."""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402

check, wait_until, rows_of, final_task = base.check, base.wait_until, base.rows_of, base.final_task
SRC = base.SRC
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # the task token the context carries
LIVE = []


def git(cwd, *args, env=None):
    e = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
             GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    e.update(env or {})
    r = subprocess.run(["git"] + list(args), cwd=cwd, capture_output=True, text=True, env=e)
    if r.returncode != 0:
        raise RuntimeError("git %s: %s" % (" ".join(args), r.stderr))
    return r.stdout.strip()


def make_repo(root, name, files_by_commit, tags=None):
    """Creates bare ROOT/NAME.git from a work tree with one commit per dict; returns the shas."""
    work = os.path.join(root, "_work", name)
    os.makedirs(work)
    git(work, "init", "-q", "-b", "main")
    shas = []
    for files in files_by_commit:
        for path, text in files.items():
            p = os.path.join(work, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "c%d" % len(shas))
        shas.append(git(work, "rev-parse", "HEAD"))
    for tag, idx in (tags or {}).items():
        git(work, "tag", tag, shas[idx])
    bare = os.path.join(root, name + ".git")
    os.makedirs(os.path.dirname(bare), exist_ok=True)
    git(root, "clone", "-q", "--bare", work, bare)
    git(bare, "config", "http.receivepack", "true")
    return shas


def make_submodule_repo(root, name, sub, url):
    """Creates bare ROOT/NAME.git whose commit has ROOT/SUB.git as submodule lib, at url."""
    work = os.path.join(root, "_work", name)
    os.makedirs(work)
    git(work, "init", "-q", "-b", "main")
    git(work, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
        os.path.join(root, sub + ".git"), "lib")
    git(work, "config", "-f", ".gitmodules", "submodule.lib.url", url)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "with a submodule")
    sha = git(work, "rev-parse", "HEAD")
    bare = os.path.join(root, name + ".git")
    git(root, "clone", "-q", "--bare", work, bare)
    return sha


class GitServer:
    def __init__(self, tmp, private):
        self.root = os.path.join(tmp, "git")
        os.makedirs(self.root, exist_ok=True)
        self.portfile = os.path.join(tmp, "git.port")
        self.log = open(os.path.join(tmp, "git.log"), "w")
        self.private = private

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "servers", "gitserver.py"),
                                      "--root", self.root, "--port", "0", "--token", TOKEN,
                                      "--private", ",".join(self.private),
                                      "--port-file", self.portfile],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self.proc)
        wait_until(lambda: os.path.exists(self.portfile) and open(self.portfile).read().strip(), 10,
                   "the git server's port")
        self.url = "http://127.0.0.1:%s" % open(self.portfile).read().strip()


def context(gs, sha, ref="refs/heads/main", repo="acme/app"):
    return {"server_url": gs.url + "/", "repository": repo, "sha": sha, "ref": ref,
            "gitea_default_actions_url": gs.url, "token": TOKEN}


def run_job(d, steps, ctx, timeout=120):
    j = d.admin("enqueue", {"runsOn": ["matric-builder"], "steps": steps, "context": ctx})["jobId"]
    return final_task(d, j, timeout)


def text_of(t):
    return "\n".join(rows_of(t)) if t else ""


NODE_ACTION = {
    "action.yml": "name: hello\ninputs:\n  who:\n    required: true\n  greeting:\n    default: hi\n"
                  "outputs:\n  said:\n    description: what it said\n"
                  "runs:\n  using: node20\n  main: main.js\n  post: post.js\n",
    "main.js": "const fs = require('fs');\n"
               "const said = process.env['INPUT_GREETING'] + ' ' + process.env['INPUT_WHO'];\n"
               "console.log('main says ' + said);\n"
               "console.log('action path ' + process.env['GITHUB_ACTION_PATH']);\n"
               "fs.appendFileSync(process.env['GITHUB_OUTPUT'], 'said=' + said + '\\n');\n"
               "fs.appendFileSync(process.env['GITHUB_STATE'], 'remember=' + said + '\\n');\n",
    "post.js": "console.log('post says ' + process.env['STATE_remember']);\n",
    ".gitignore": "node_modules\n",
}


def sc_checkout(d, tmp, r, gs, shas):
    steps = [{"uses": "actions/checkout@v4"},
             {"name": "look", "run": "cat version.txt; cat .git/HEAD; test -d .git/objects && echo has-objects; "
                                     "grep -c extraheader .git/config"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "checkout: the job succeeds:\n" + out[-1500:])
    check("version one" in out and "version two" not in out, "checkout: the task's exact commit, not main's head")
    check(shas[0] in out, "checkout: HEAD is the task's sha")
    check("has-objects" in out, "checkout: .git is there")
    check(TOKEN not in out, "checkout: the token never reaches the log")
    lines = [l.strip() for l in rows_of(t)]
    check("1" in lines, "checkout: persist-credentials wrote the auth header into .git/config")
    # a tag into a sub-path, credentials not persisted
    steps = [{"uses": "actions/checkout@v4", "with": {"ref": "v2", "path": "sub/dir", "persist-credentials": False}},
             {"run": "cat sub/dir/version.txt; grep -c extraheader sub/dir/.git/config || echo no-header"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "checkout: tag into a path succeeds:\n" + out[-1500:])
    check("version two" in out and "no-header" in out, "checkout: the tag's tree, in sub/dir, no header")
    mirrors = os.path.join(r.cache, "mirrors")
    check(os.path.isdir(mirrors) and len(os.listdir(mirrors)) >= 1, "checkout: a mirror under the cache dir")
    before = {n: os.stat(os.path.join(mirrors, n)).st_ino for n in os.listdir(mirrors)}
    t = run_job(d, [{"uses": "actions/checkout@v4"}, {"run": "cat version.txt"}], context(gs, shas[1]))
    check(t and t["status"] == "success" and "version two" in text_of(t), "checkout: a second job on the same repository")
    after = {n: os.stat(os.path.join(mirrors, n)).st_ino for n in os.listdir(mirrors)}
    check(before == after, "checkout: the mirror is reused, not cloned again: %s %s" % (before, after))
    # a wrong token
    steps = [{"uses": "actions/checkout@v4", "with": {"token": "wrong-token-1234"}}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "failure", "checkout: a wrong token fails the job")
    check("authentication" in out.lower() or "401" in out, "checkout: the failure says why:\n" + out[-800:])
    check("wrong-token-1234" not in out, "checkout: the wrong token is not in the log")
    # two jobs at once
    jobs = [d.admin("enqueue", {"runsOn": ["matric-builder"], "context": context(gs, shas[i % 2]),
                                "steps": [{"uses": "actions/checkout@v4"}, {"run": "cat version.txt"}]})["jobId"]
            for i in range(2)]
    ts = [final_task(d, j, 120) for j in jobs]
    check(all(t and t["status"] == "success" for t in ts), "checkout: two jobs at once both succeed")
    check(ts[0] and "version one" in text_of(ts[0]) and ts[1] and "version two" in text_of(ts[1]),
          "checkout: each got its own commit")
    # a private submodule on the same host: the token goes with it
    steps = [{"uses": "actions/checkout@v4", "with": {"repository": "acme/withsub", "submodules": True}},
             {"run": "cat lib/lib.txt; test -e lib/.git && echo sub-has-git"}]
    t = run_job(d, steps, context(gs, r.withsub_sha, repo="acme/withsub"))
    out = text_of(t)
    check(t and t["status"] == "success" and "the library" in out and "sub-has-git" in out,
          "checkout: a private submodule is checked out:\n" + out[-1500:])


def sc_node(d, tmp, r, gs, shas):
    steps = [{"id": "h", "uses": "acts/hello@v1", "with": {"who": "world"}},
             {"run": "echo \"output=${{ steps.h.outputs.said }}\""},
             {"run": "echo last-step"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "node: the job succeeds:\n" + out[-1500:])
    check("main says hi world" in out, "node: inputs from with and defaults")
    check("output=hi world" in out, "node: the action's output reaches the next step")
    check("action path /var/run/act/actions/" in out, "node: GITHUB_ACTION_PATH is the action's copy")
    rows = rows_of(t)
    post = [i for i, l in enumerate(rows) if "post says hi world" in l]
    last = [i for i, l in enumerate(rows) if l.strip() == "last-step"]
    check(post and last and post[0] > last[0], "node: the post stage runs after the last step with its state")


def sc_local(d, tmp, r, gs, shas):
    steps = [{"uses": "actions/checkout@v4"},
             {"id": "l", "uses": "./.github/actions/greet", "with": {"who": "local"}},
             {"run": "echo \"local-output=${{ steps.l.outputs.said }}\""}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "local: the job succeeds:\n" + out[-1500:])
    check("main says hi local" in out and "local-output=hi local" in out, "local: ran from the workspace")
    check("post says hi local" in out, "local: its post stage ran")


def sc_docker(d, tmp, r, gs, shas):
    steps = [{"uses": "acts/dock@v1", "with": {"who": "container"}}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "docker: the job succeeds:\n" + out[-1500:])
    check("dock says hello container" in out, "docker: args from inputs")
    check("env FROM_ACTION=yes" in out, "docker: runs.env reaches the container")


COMPOSITE_ACTION = {
    "action.yml": "name: comp\ninputs:\n  who:\n    required: true\n  greeting:\n    default: hey\n"
                  "outputs:\n  said:\n    value: ${{ steps.say.outputs.said }}\n"
                  "runs:\n  using: composite\n  steps:\n"
                  "    - id: say\n      shell: sh\n      run: |\n"
                  "        echo \"composite says $INPUT_GREETING ${{ inputs.who }}\"\n"
                  "        echo \"said=${{ inputs.greeting }} ${{ inputs.who }}\" >> \"$GITHUB_OUTPUT\"\n"
                  "        echo FROM_COMPOSITE=yes >> \"$GITHUB_ENV\"\n"
                  "        echo \"inside caller=$CALLER_ENV secrets=${{ toJSON(secrets) }}\"\n"
                  "    - shell: sh\n      run: sh \"$GITHUB_ACTION_PATH/helper.sh\" \"${{ steps.say.outcome }}\"\n"
                  "    - uses: acts/hello@v1\n      with:\n        who: nested\n",
    "helper.sh": "echo \"helper ran after $1\"\n",
}

FAILING_COMPOSITE = {
    "action.yml": "name: compfail\nruns:\n  using: composite\n  steps:\n"
                  "    - run: echo first; exit 3\n      shell: sh\n"
                  "    - run: echo should-not-run\n      shell: sh\n"
                  "    - run: echo composite saw ${{ steps['0'].outcome }}\n      if: failure()\n      shell: sh\n",
}


def sc_composite(d, tmp, r, gs, shas):
    steps = [{"id": "c", "uses": "acts/comp@v1", "with": {"who": "world"}, "env": {"CALLER_ENV": "caller"}},
             {"run": "echo \"out=${{ steps.c.outputs.said }} env=$FROM_COMPOSITE caller=$CALLER_ENV\""},
             {"run": "echo last-step"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "success", "composite: the job succeeds:\n" + out[-2000:])
    check("composite says hey world" in out, "composite: INPUT_* from with and defaults:\n" + out[-1500:])
    check("inside caller=caller secrets={}" in out, "composite: the caller's env inside, no secrets:\n" + out[-1500:])
    check("helper ran after success" in out, "composite: a script beside action.yml, the nested steps context")
    check("main says hi nested" in out, "composite: a nested node action with its own inputs only")
    check("out=hey world env=yes caller=" in out and "caller=caller\n" not in out.split("out=")[1],
          "composite: output, GITHUB_ENV propagated, the caller's env: does not leak:\n" + out[-1500:])
    rows = rows_of(t)
    post = [i for i, l in enumerate(rows) if "post says hi nested" in l]
    last = [i for i, l in enumerate(rows) if l.strip() == "last-step"]
    check(post and last and post[0] > last[0], "composite: the nested action's post stage runs at the end")
    steps = [{"uses": "acts/compfail@v1"}, {"run": "echo after-failure"},
             {"if": "always()", "run": "echo always-ran"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "failure", "composite: a failing nested step fails the job")
    check("first" in out and "should-not-run" not in out and "composite saw failure" in out,
          "composite: later nested steps skipped, if: failure() inside runs:\n" + out[-1500:])
    check("after-failure" not in out and "always-ran" in out, "composite: the job goes on as after a failed step")


PREPOST_ACTION = {
    "action.yml": "name: prepost\ninputs:\n  tag:\n    default: dflt\n"
                  "runs:\n  using: node20\n  pre: pre.js\n  main: main.js\n  post: post.js\n",
    "pre.js": "const fs = require('fs');\n"
              "console.log('pre of ' + process.env['INPUT_TAG']);\n"
              "fs.appendFileSync(process.env['GITHUB_STATE'], 'frompre=' + process.env['INPUT_TAG'] + '\\n');\n",
    "main.js": "console.log('main of ' + process.env['INPUT_TAG'] + ' state=' + process.env['STATE_frompre']);\n",
    "post.js": "console.log('post of ' + process.env['INPUT_TAG']);\n",
    "skip/action.yml": "name: skip\nruns:\n  using: node20\n  pre: ../pre.js\n  pre-if: false\n"
                       "  main: ../main.js\n",
    "fail/action.yml": "name: fail\nruns:\n  using: node20\n  pre: fail.js\n  main: ../main.js\n",
    "fail/fail.js": "console.log('failing pre'); process.exit(4);\n",
}


def sc_prepost(d, tmp, r, gs, shas):
    steps = [{"run": "echo first-step"},
             {"uses": "acts/prepost@v1", "with": {"tag": "one"}},
             {"uses": "acts/prepost@v1"},
             {"uses": "acts/prepost/skip@v1", "with": {"tag": "skipped"}},
             {"uses": "acts/precomp@v1", "with": {"tag": "deep"}},
             {"run": "echo last-step"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    rows = [l.strip() for l in rows_of(t)]

    def at(text):
        found = [i for i, l in enumerate(rows) if l.endswith(text)]
        return found[0] if found else -1
    check(t and t["status"] == "success", "prepost: the job succeeds:\n" + out[-2000:])
    check(0 <= at("pre of one") < at("pre of dflt") < at("pre of nested-deep") < at("first-step"),
          "prepost: pre stages first, in step order, with inputs and defaults, also of a remote "
          "composite's steps:\n" + out[-2000:])
    check(at("main of nested-deep state=nested-deep") > at("first-step"),
          "prepost: the nested action's main stage sees its pre stage's state")
    check(at("last-step") < at("post of nested-deep") < at("post of dflt"),
          "prepost: the nested action's post stage in reverse order")
    check("pre of skipped" not in out, "prepost: pre-if false skips the pre stage")
    check(at("main of one state=one") > at("first-step") and at("main of dflt state=dflt") > 0,
          "prepost: each main stage sees its own pre stage's state:\n" + out[-2000:])
    check(at("last-step") < at("post of dflt") < at("post of one"),
          "prepost: post stages in reverse order after the last step:\n" + out[-2000:])
    check(out.count("Fetching action acts/prepost@v1") == 1, "prepost: the action is fetched once for the job")
    steps = [{"run": "echo first-step"}, {"uses": "acts/prepost/fail@v1"},
             {"if": "always()", "run": "echo always-step"}]
    t = run_job(d, steps, context(gs, shas[0]))
    out = text_of(t)
    check(t and t["status"] == "failure", "prepost: a failing pre stage fails the job")
    check("failing pre" in out and "Pre stage completed with exit code 4" in out,
          "prepost: the pre stage's failure is in the log:\n" + out[-1500:])
    check("first-step" not in out and "always-step" not in out and "main of" not in out,
          "prepost: no main stage runs after a failed pre stage:\n" + out[-1500:])


def dockbuild_action(base):
    return {
        "action.yml": "name: Dock Build\ninputs:\n  who:\n    default: nobody\n"
                      "runs:\n  using: docker\n  image: docker/Dockerfile\n"
                      "  args: ['${{ inputs.who }}']\n"
                      "  pre-entrypoint: /bin/sh /pre.sh\n  post-entrypoint: /bin/sh /post.sh\n",
        "docker/Dockerfile": "FROM %s\nCOPY entry.sh pre.sh post.sh /\n"
                             "ENTRYPOINT [\"/bin/sh\", \"/entry.sh\"]\n" % base,
        "docker/entry.sh": "echo \"built says hello $1\"\necho \"out=$1\" >> \"$GITHUB_OUTPUT\"\n",
        "docker/pre.sh": "echo \"pre of $1\"\n",
        "docker/post.sh": "echo \"post of $1\"\n",
    }


def sc_dockerfile(d, tmp, r, gs, shas):
    steps = [{"uses": "actions/checkout@v4"},
             {"id": "b", "uses": "acts/dockbuild@v1", "with": {"who": "builder"}},
             {"run": "echo \"out=${{ steps.b.outputs.out }}\""},
             {"uses": "./.github/actions/ldock"},
             {"run": "echo last-step"}]
    try:
        t = run_job(d, steps, context(gs, shas[0]), timeout=300)
        out = text_of(t)
        rows = [l.strip() for l in rows_of(t)]

        def at(text):
            found = [i for i, l in enumerate(rows) if l.endswith(text)]
            return found[0] if found else -1
        check(t and t["status"] == "success", "dockerfile: the job succeeds:\n" + out[-2500:])
        check(0 <= at("pre of builder") < at("built says hello builder"),
              "dockerfile: pre-entrypoint before the main stage:\n" + out[-2000:])
        check("out=builder" in out, "dockerfile: an output from the built container")
        check("local docker built" in out, "dockerfile: a local action from a lone Dockerfile:\n" + out[-1500:])
        check(0 <= at("last-step") < at("post of builder"), "dockerfile: post-entrypoint after the last step")
        steps = [{"uses": "acts/dockbad@v1"}, {"run": "echo not-reached"}]
        t = run_job(d, steps, context(gs, shas[0]), timeout=300)
        out = text_of(t)
        check(t and t["status"] == "failure" and "returned a non-zero code: 3" in out and "not-reached" not in out,
              "dockerfile: a failing build fails the step with the engine's message:\n" + out[-1500:])
    finally:
        # Only the images of this scenario's actions: other tests build theirs at the same time.
        ids = []
        for uses in ("acts/dockbuild@v1", "./.github/actions/ldock", "acts/dockbad@v1"):
            ids += subprocess.run(["docker", "images", "-q", "--filter", "label=io.runnerd.action=" + uses],
                                  capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rmi", "-f"] + sorted(set(ids)), capture_output=True)


def sc_kill9(d, tmp, r, gs, shas):
    def kill_when(job, text, meanwhile=None):
        wait_until(lambda: (lambda t: t and any(text in x for x in rows_of(t)))(d.task_of_job(job)), 90,
                   "%r before the kill" % text)
        r.proc.kill()
        r.wait(10)
        if meanwhile:
            meanwhile()
        time.sleep(1)
        r.start()
    steps = [{"id": "h", "uses": "acts/hello@v1", "with": {"who": "again"}},
             {"run": "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.3; done"},
             {"run": "echo \"after output=${{ steps.h.outputs.said }}\""}]
    job = d.admin("enqueue", {"runsOn": ["matric-builder"], "steps": steps, "context": context(gs, shas[0])})["jobId"]
    kill_when(job, "tick 2")
    t = final_task(d, job, 120)
    out = text_of(t)
    check(t and t["status"] == "success", "kill9: the resumed job succeeds:\n" + out[-1500:])
    check("after output=hi again" in out, "kill9: outputs from before the kill are kept")
    check(out.count("post says hi again") == 1, "kill9: the post stage registered before the kill runs once:\n" + out[-1500:])
    steps = [{"id": "c", "uses": "acts/slowcomp@v1", "with": {"who": "kept"}},
             {"run": "echo \"after ${{ job.status }} out=${{ steps.c.outputs.val }}\""}]
    job = d.admin("enqueue", {"runsOn": ["matric-builder"], "steps": steps, "context": context(gs, shas[0])})["jobId"]
    kill_when(job, "nested tick 2")
    t = final_task(d, job, 120)
    out = text_of(t)
    rows = [l.strip() for l in rows_of(t)]
    check(t and t["status"] == "success", "kill9: a composite interrupted by a restart resumes:\n" + out[-1500:])
    check(all(rows.count("nested tick %d" % i) == 1 for i in range(1, 9)),
          "kill9: every nested row once:\n" + out[-1500:])
    check("after success out=early-kept-8" in out,
          "kill9: the composite's steps context, inputs and outputs survive:\n" + out[-1500:])

    # The saved composite does not parse any more: the job fails saying so, nothing is left.
    def damage():
        db = sqlite3.connect(r.state)
        rows = db.execute("SELECT id, checkpoint FROM tasks WHERE state = 'running'").fetchall()
        for tid, cp in rows:
            cp = json.loads(cp)
            if cp.get("frames"):
                cp["frames"][0]["text"] = "runs: ["
                db.execute("UPDATE tasks SET checkpoint = ? WHERE id = ?", (json.dumps(cp), tid))
        db.commit()
        db.close()
        check(any(json.loads(cp).get("frames") for _, cp in rows), "kill9: a checkpoint inside the composite")
    job = d.admin("enqueue", {"runsOn": ["matric-builder"], "steps": steps, "context": context(gs, shas[0])})["jobId"]
    kill_when(job, "nested tick 2", damage)
    t = final_task(d, job, 120)
    out = text_of(t)
    check(t and t["status"] == "failure" and "resuming inside acts/slowcomp@v1:" in out,
          "kill9: a damaged composite checkpoint fails the job clearly:\n" + out[-1500:])


def sc_errors(d, tmp, r, gs, shas):
    cases = [
        # refused by the workflow loader already, with the file, line and column
        ("acts/hello", "steps[0].uses: unexpected value 'acts/hello' (expected 'owner/repo[/path]@ref'"),
        # the same reference reached only at run time: the spec's (act's) message
        ("${{ 'acts/hello' }}", "Expected format {org}/{repo}[/path]@ref. Actual 'acts/hello' Input string was not in a correct format"),
        ("acts/empty@v1", "no action.yml, action.yaml or Dockerfile"),
        ("acts/hello@%s" % r.hello_sha[:10], "is the shortened version of a commit SHA"),
    ]
    for uses, want in cases:
        t = run_job(d, [{"uses": uses}, {"run": "echo not-reached"}], context(gs, shas[0]))
        out = text_of(t)
        check(t and t["status"] == "failure" and want in out and "not-reached" not in out,
              "errors: %s fails with %r:\n%s" % (uses, want, out[-800:]))


SCENARIOS = [("checkout", sc_checkout), ("node", sc_node), ("local", sc_local), ("docker", sc_docker),
             ("dockerfile", sc_dockerfile), ("composite", sc_composite), ("prepost", sc_prepost),
             ("kill9", sc_kill9), ("errors", sc_errors)]


def main():
    only = sys.argv[1:]
    imgs = {}
    for kind in ("node", "busybox"):
        imgs[kind], err = base.test_image(kind)
        if imgs[kind] is None:
            print("building the %s test image failed:" % kind, err)
            return 1
    tmp = tempfile.mkdtemp(prefix="runnerd-e2e-actions-")
    gs = GitServer(tmp, ["acme"])
    local_action = {".github/actions/greet/" + k: v for k, v in NODE_ACTION.items()}
    local_action[".github/actions/ldock/Dockerfile"] = ("FROM %s\nCOPY hello.txt /\nENTRYPOINT [\"cat\", \"/hello.txt\"]\n"
                                                       % imgs["busybox"])
    local_action[".github/actions/ldock/hello.txt"] = "local docker built\n"
    shas = make_repo(gs.root, "acme/app", [dict({"version.txt": "version one\n"}, **local_action),
                                           {"version.txt": "version two\n"}], tags={"v2": 1})
    hello = make_repo(gs.root, "acts/hello", [NODE_ACTION], tags={"v1": 0})
    make_repo(gs.root, "acme/lib", [{"lib.txt": "the library\n"}])
    withsub = make_submodule_repo(gs.root, "acme/withsub", "acme/lib", "../lib")
    make_repo(gs.root, "acts/dock", [{
        "action.yml": "name: dock\ninputs:\n  who:\n    default: nobody\nruns:\n  using: docker\n"
                      "  image: docker://%s\n  entrypoint: /bin/sh\n"
                      "  args: ['-c', 'echo dock says hello ${{ inputs.who }}; echo env FROM_ACTION=$FROM_ACTION']\n"
                      "  env:\n    FROM_ACTION: 'yes'\n" % imgs["busybox"]}], tags={"v1": 0})
    make_repo(gs.root, "acts/empty", [{"README": "nothing here\n"}], tags={"v1": 0})
    make_repo(gs.root, "acts/comp", [COMPOSITE_ACTION], tags={"v1": 0})
    make_repo(gs.root, "acts/compfail", [FAILING_COMPOSITE], tags={"v1": 0})
    make_repo(gs.root, "acts/prepost", [PREPOST_ACTION], tags={"v1": 0})
    make_repo(gs.root, "acts/precomp", [{"action.yml": "name: precomp\ninputs:\n  tag: {}\nruns:\n  using: composite\n"
                                                       "  steps:\n    - uses: acts/prepost@v1\n      with:\n"
                                                       "        tag: nested-${{ inputs.tag }}\n"}], tags={"v1": 0})
    make_repo(gs.root, "acts/slowcomp", [{"action.yml": "name: slow\ninputs:\n  who: {}\n"
                                                        "outputs:\n  val:\n    value: ${{ steps.e.outputs.v }}-${{ inputs.who }}-${{ steps.t.outputs.n }}\n"
                                                        "runs:\n  using: composite\n  steps:\n"
                                                        "    - id: e\n      shell: sh\n      run: echo v=early >> $GITHUB_OUTPUT\n"
                                                        "    - id: t\n      shell: sh\n      run: |\n"
                                                        "        for i in 1 2 3 4 5 6 7 8; do echo nested tick $i; sleep 0.3; done\n"
                                                        "        echo n=$i >> $GITHUB_OUTPUT\n"}],
              tags={"v1": 0})
    make_repo(gs.root, "acts/dockbuild", [dockbuild_action(imgs["busybox"])], tags={"v1": 0})
    make_repo(gs.root, "acts/dockbad", [{"Dockerfile": "FROM %s\nRUN exit 3\n" % imgs["busybox"]}],
              tags={"v1": 0})
    gs.start()
    d = base.Double(tmp)
    r = base.Runner(d, tmp, "actions", imgs["node"], capacity=2)
    r.cache = os.path.join(r.dir, "cache")
    r.hello_sha = hello[0]
    r.withsub_sha = withsub
    with open(r.config, "a") as f:
        f.write("  cache_dir: %s\n" % r.cache)
    r.start()
    try:
        for name, fn in SCENARIOS:
            if only and name not in only:
                continue
            print("scenario", name, flush=True)
            t0 = time.monotonic()
            try:
                fn(d, tmp, r, gs, shas)
            except Exception as e:  # a broken scenario is a failure, not a crash of the suite
                check(False, "%s: %r" % (name, e))
            print("scenario %s: %.1fs" % (name, time.monotonic() - t0), flush=True)
        check(r.stop() == 0, "runnerd exits 0")
        base.check_no_leftovers(r, "actions")
    finally:
        for p in LIVE + [r.proc]:
            if p and p.poll() is None:
                p.kill()
        d.stop()
    if base.failures:
        print("runnerd log tail:\n" + r.log_text()[-3000:])
        print("%d check(s) failed" % len(base.failures))
        return 1
    print("all actions scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
