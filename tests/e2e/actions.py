#!/usr/bin/env python3
"""End-to-end tests of checkout and actions (issue 6): the real `runnerctl register` and
`runnerd` against the Gitea double, a local git server (tests/gitserver.py: git's own
http-backend, with a token for private repositories) and the real Docker engine. The task
context points server_url and gitea_default_actions_url at the git server.

Scenarios:
  checkout      the task's exact commit (not the branch head), .git present with the
                credentials persisted; a tag into a sub-path; the mirror reused by a second job;
                a wrong token fails clearly without the token in the log; two jobs at once
  node          a remote node action: inputs (with and defaults), outputs, GITHUB_ACTION_PATH,
                its post stage after the last step with the state saved by main
  local         a local node action from the checked-out repository
  docker        a remote docker action (runs.image docker://...) with args from inputs and env
  errors        a reference without @ref (at load and at run time), a repository without an action.yml, a shortened sha,
                composite (not supported yet): each fails the step with a message naming it

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `actions.py NAME...`."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon as base  # noqa: E402

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


class GitServer:
    def __init__(self, tmp, private):
        self.root = os.path.join(tmp, "git")
        os.makedirs(self.root, exist_ok=True)
        self.portfile = os.path.join(tmp, "git.port")
        self.log = open(os.path.join(tmp, "git.log"), "w")
        self.private = private

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "gitserver.py"),
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


def sc_errors(d, tmp, r, gs, shas):
    cases = [
        # refused by the workflow loader already, with the file, line and column
        ("acts/hello", "steps[0].uses: unexpected value 'acts/hello' (expected 'owner/repo[/path]@ref'"),
        # the same reference reached only at run time: the spec's (act's) message
        ("${{ 'acts/hello' }}", "Expected format {org}/{repo}[/path]@ref. Actual 'acts/hello' Input string was not in a correct format"),
        ("acts/empty@v1", "no action.yml, action.yaml or Dockerfile"),
        ("acts/hello@%s" % r.hello_sha[:10], "is the shortened version of a commit SHA"),
        ("acts/comp@v1", "composite actions are not supported yet"),
    ]
    for uses, want in cases:
        t = run_job(d, [{"uses": uses}, {"run": "echo not-reached"}], context(gs, shas[0]))
        out = text_of(t)
        check(t and t["status"] == "failure" and want in out and "not-reached" not in out,
              "errors: %s fails with %r:\n%s" % (uses, want, out[-800:]))


SCENARIOS = [("checkout", sc_checkout), ("node", sc_node), ("local", sc_local), ("docker", sc_docker),
             ("errors", sc_errors)]


def main():
    only = sys.argv[1:]
    imgs = {}
    for kind in ("node", "busybox"):
        p = subprocess.run(["sh", os.path.join(SRC, "tests", "images", "build.sh"), kind], capture_output=True, text=True)
        if p.returncode != 0:
            print("building the %s test image failed:" % kind, p.stderr)
            return 1
        imgs[kind] = p.stdout.strip().splitlines()[-1]
    tmp = tempfile.mkdtemp(prefix="runnerd-e2e-actions-")
    gs = GitServer(tmp, ["acme"])
    local_action = {".github/actions/greet/" + k: v for k, v in NODE_ACTION.items()}
    shas = make_repo(gs.root, "acme/app", [dict({"version.txt": "version one\n"}, **local_action),
                                           {"version.txt": "version two\n"}], tags={"v2": 1})
    hello = make_repo(gs.root, "acts/hello", [NODE_ACTION], tags={"v1": 0})
    make_repo(gs.root, "acts/dock", [{
        "action.yml": "name: dock\ninputs:\n  who:\n    default: nobody\nruns:\n  using: docker\n"
                      "  image: docker://%s\n  entrypoint: /bin/sh\n"
                      "  args: ['-c', 'echo dock says hello ${{ inputs.who }}; echo env FROM_ACTION=$FROM_ACTION']\n"
                      "  env:\n    FROM_ACTION: 'yes'\n" % imgs["busybox"]}], tags={"v1": 0})
    make_repo(gs.root, "acts/empty", [{"README": "nothing here\n"}], tags={"v1": 0})
    make_repo(gs.root, "acts/comp", [{"action.yml": "name: c\nruns:\n  using: composite\n  steps:\n"
                                                    "    - run: echo hi\n      shell: sh\n"}], tags={"v1": 0})
    gs.start()
    d = base.Double(tmp)
    r = base.Runner(d, tmp, "actions", imgs["node"], capacity=2)
    r.cache = os.path.join(r.dir, "cache")
    r.hello_sha = hello[0]
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
