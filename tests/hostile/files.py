#!/usr/bin/env python3
"""Hostile workflows, files: what a workflow author can put in the files runnerd copies, reads
or binds, run with the real `runnerctl exec` against the real Docker engine.

  action-links  a remote action (a real repository served by tests/servers/gitserver.py) whose
                action.yml is a git symlink to a host file, whose sub-path is a symlink to a
                host directory (`uses: acme/evil/sub@main`, `sub -> /host/dir`), and a docker
                action whose Dockerfile directory is a symlink to a host directory with a
                secret: each fails its step naming the link, the host file is neither parsed,
                run nor packed. A Dockerfile context holding a symlink to a host secret builds
                without the secret. Links that stay inside the action are followed (action.yml
                -> real.yml); links of every kind (absolute, relative, climbing out of the
                action's directory) are copied into the job as links.
  bind          `runnerctl exec --bind DIR`: DIR's and a subdirectory's mode, owner and mtime are
                unchanged after the run, while a file the job writes appears in DIR.
  ws-links      the workspace copy (no --bind) carries symlinks as symlinks: relative,
                absolute, dangling, out of the workspace, to a directory; a local docker action
                built from the job container's files gets its link as a link, and the host file
                it names is never read.

Environment: RUNNERCTL, SRCDIR. Run some scenarios with `files.py NAME...`."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "servers"))
from gitserver import GitServer  # noqa: E402
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image; labelled())

T = lib.Tally(keep=3000)
check = T.check
leftovers = lib.labelled
SECRET = "host-secret-4f1c2a"  # in host files no job may see
MARKER = "HOST-FILE-PARSED-7d21"  # the run step of a host action.yml
OWNER = "files%d" % os.getpid()  # the test repository's owner: image labels name it
NONCE = "%d-%s" % (os.getpid(), os.urandom(4).hex())  # no build cache from an earlier run


def sh(*args, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd)


IMAGE, err = lib.test_image()
if IMAGE is None:
    print("FAIL building the busybox test image: " + err)
    sys.exit(1)


left_behind = []


def run(tmp, workdir, wf, *args, env=None):
    """runnerctl exec -C workdir of wf (written outside workdir); returns rc, out+err."""
    path = os.path.join(tmp, "wf-%d.yml" % len(os.listdir(tmp)))
    with open(path, "w") as f:
        f.write(wf)
    e = dict(os.environ, RUNNERD_CACHE_DIR=os.path.join(tmp, "cache"))
    e.update(env or {})
    p = subprocess.Popen([RUNNERCTL, "exec", "-C", workdir, *args, path], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=300)
    left_behind.extend(leftovers("io.runnerd.owner=%s:%d" % (os.uname().nodename, p.pid)))
    return p.returncode, out


def git(cwd, *args):
    e = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
             GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    r = subprocess.run(["git"] + list(args), cwd=cwd, capture_output=True, text=True, env=e)
    if r.returncode != 0:
        raise RuntimeError("git %s: %s" % (" ".join(args), r.stderr))
    return r.stdout.strip()


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def composite(marker):
    return ("name: c\nruns:\n  using: composite\n  steps:\n"
            "    - run: echo %s\n      shell: sh\n" % marker)


# ------------------------------------------------------------------------------------------

def sc_action_links(tmp):
    host = os.path.join(tmp, "host")  # the runner's machine: files no job may read
    write(os.path.join(host, "evil.yml"), composite(MARKER))
    write(os.path.join(host, "dir", "action.yml"), composite(MARKER))
    write(os.path.join(host, "ctx", "Dockerfile"),
          "FROM %s\nCOPY secret.txt /secret.txt\nENTRYPOINT [\"cat\", \"/secret.txt\"]\n" % IMAGE)
    write(os.path.join(host, "ctx", "secret.txt"), SECRET + "\n")
    write(os.path.join(host, "secret.txt"), SECRET + "\n")

    work = os.path.join(tmp, "_work")
    os.makedirs(work)
    git(work, "init", "-q", "-b", "main")
    os.makedirs(os.path.join(work, "yml"))
    os.symlink(os.path.join(host, "evil.yml"), os.path.join(work, "yml", "action.yml"))
    os.symlink(os.path.join(host, "dir"), os.path.join(work, "sub"))
    write(os.path.join(work, "dock", "action.yml"),
          "name: files-d-%s\nruns:" % NONCE + "\n  using: docker\n  image: ctx/Dockerfile\n")
    os.symlink(os.path.join(host, "ctx"), os.path.join(work, "dock", "ctx"))
    # a context with a link to a host secret: the link goes in as a link, never its target
    write(os.path.join(work, "inctx", "action.yml"),
          "name: files-i-%s\nruns:" % NONCE + "\n  using: docker\n  image: Dockerfile\n")
    write(os.path.join(work, "inctx", "Dockerfile"),
          "FROM %s\nCOPY . /ctx/\nENTRYPOINT [\"sh\", \"-c\", "
          "\"echo inctx-link=$(readlink /ctx/secret); cat /ctx/secret; echo inctx-done\"]\n"
          % IMAGE)
    os.symlink(os.path.join(host, "secret.txt"), os.path.join(work, "inctx", "secret"))
    write(os.path.join(work, "inctx", "nonce"), NONCE)
    # links that stay inside: followed for action.yml, copied into the job as links
    write(os.path.join(work, "ok", "real.yml"),
          "name: ok\nruns:\n  using: composite\n  steps:\n"
          "    - run: echo ok-followed; echo \"ok-abs=$(readlink \"$P/abs\")\"; "
          "echo \"ok-rel=$(readlink \"$P/rel\")\"; echo \"ok-climb=$(readlink \"$P/climb\")\"; cat \"$P/abs\" 2>/dev/null || true; echo ok-done\n"
          "      shell: sh\n      env:\n        P: ${{ github.action_path }}\n")
    os.symlink("real.yml", os.path.join(work, "ok", "action.yml"))
    os.symlink(os.path.join(host, "secret.txt"), os.path.join(work, "ok", "abs"))
    os.symlink("real.yml", os.path.join(work, "ok", "rel"))
    os.symlink("../../../../etc/hostname", os.path.join(work, "ok", "climb"))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "links")
    gitroot = os.path.join(tmp, "git")
    os.makedirs(os.path.join(gitroot, OWNER))
    git(tmp, "clone", "-q", "--bare", work, os.path.join(gitroot, OWNER, "evil.git"))
    # a relative link that climbs out: its own repository, run on the host (copying it into a
    # job container is refused by the engine, which would hide whether it was parsed)
    rel = os.path.join(tmp, "_rel")
    os.makedirs(os.path.join(rel, "rel"))
    git(rel, "init", "-q", "-b", "main")
    os.symlink("../" * 12 + host.lstrip("/") + "/evil.yml", os.path.join(rel, "rel", "action.yml"))
    git(rel, "add", "-A")
    git(rel, "commit", "-q", "-m", "climbs out")
    git(tmp, "clone", "-q", "--bare", rel, os.path.join(gitroot, OWNER, "rel.git"))
    srv = GitServer(gitroot).start()
    try:
        cfg = os.path.join(tmp, "config.yaml")
        write(cfg, "runnerd:\n  actions_url: %s\n" % srv.url)
        ws = os.path.join(tmp, "ws")
        os.makedirs(ws)

        def step(uses, label="docker://" + IMAGE):
            rc, out = run(tmp, ws, "on: push\njobs:\n  j:\n    runs-on: box\n    steps:\n"
                          "      - uses: %s\n" % uses.replace("acme/", OWNER + "/"),
                          "-c", cfg, "-l", "box=" + label)
            return rc, out

        for uses, label, what in (
                ("acme/evil/yml@main", None, "action.yml -> host file"),
                ("acme/rel/rel@main", "host", "action.yml -> ../../host file (host job)"),
                ("acme/evil/sub@main", None, "sub -> host directory")):
            rc, out = step(uses, *([label] if label else []))
            check("%s: the step fails" % what, rc == 1, out)
            check("%s: the host file is neither parsed nor run" % what, MARKER not in out, out)
            check("%s: the error names the link" % what,
                  "a symbolic link in " in out and " leads out of " in out, out)
        rc, out = step("acme/evil/dock@main")
        check("Dockerfile directory -> host directory: the step fails", rc == 1, out)
        check("Dockerfile directory -> host directory: nothing packed or built",
              SECRET not in out and "Step 1/" not in out, out)
        check("Dockerfile directory -> host directory: the error names the link",
              "a symbolic link in " in out and " leads out of " in out, out)
        rc, out = step("acme/evil/inctx@main")
        check("a context link to a host secret goes in as a link",
              "inctx-link=" + os.path.join(host, "secret.txt") in out and "inctx-done" in out, out)
        check("a context link to a host secret: the secret is never read", SECRET not in out, out)
        rc, out = step("acme/evil/ok@main")
        check("links inside the action: action.yml followed", rc == 0 and "ok-followed" in out,
              out)
        check("links inside the action: copied into the job as links",
              "ok-abs=" + os.path.join(host, "secret.txt") in out and "ok-rel=real.yml" in out
              and "ok-climb=../../../../etc/hostname" in out
              and "ok-done" in out, out)
        check("links inside the action: the host secret is not in the job", SECRET not in out,
              out)
    finally:
        srv.stop()


def stat_of(path):
    st = os.lstat(path)
    return (oct(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)


def sc_bind(tmp):
    ws = os.path.join(tmp, "bound")
    os.makedirs(os.path.join(ws, "sub"))
    os.makedirs(os.path.join(ws, "out"))
    write(os.path.join(ws, "sub", "f"), "f\n")
    os.chmod(ws, 0o750)
    os.chmod(os.path.join(ws, "sub"), 0o700)
    for p in (ws, os.path.join(ws, "sub")):
        os.chown(p, 4321, 4321)
        os.utime(p, ns=(1600000000123456789, 1600000000123456789))
    before = {p: stat_of(os.path.join(ws, p)) for p in (".", "sub")}
    rc, out = run(tmp, ws, "on: push\njobs:\n  b:\n    runs-on: box\n    steps:\n"
                  "      - run: echo written > out/by-job; ls sub\n",
                  "--bind", "-l", "box=docker://" + IMAGE)
    check("--bind: the job runs", rc == 0, out)
    check("--bind: a file the job writes appears in the directory",
          os.path.exists(os.path.join(ws, "out", "by-job")), out)
    after = {p: stat_of(os.path.join(ws, p)) for p in (".", "sub")}
    for p in (".", "sub"):
        check("--bind: %s keeps its mode, owner and times" % p, before[p] == after[p],
              "before %s after %s" % (before[p], after[p]))


def sc_ws_links(tmp):
    host = os.path.join(tmp, "host")
    write(os.path.join(host, "secret.txt"), SECRET + "\n")
    ws = os.path.join(tmp, "ws")
    write(os.path.join(ws, "data.txt"), "data\n")
    write(os.path.join(ws, "d", "in.txt"), "in\n")
    links = {
        "rel": "data.txt",
        "abs": os.path.join(host, "secret.txt"),
        "dangling": "no/such/file",
        "out": "../../" + os.path.basename(host) + "/secret.txt",
        "dirlink": "d",
        "d/up": "../data.txt",
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(ws, name))
    # tracked in git too (a repository's links are what runnerctl exec copies most)
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "links")
    # a local docker action whose context holds a link to a host file
    write(os.path.join(ws, "act", "action.yml"), "name: files-l-%s\nruns:" % NONCE + "\n  using: docker\n  image: Dockerfile\n")
    write(os.path.join(ws, "act", "Dockerfile"),
          "FROM %s\nCOPY . /ctx/\nENTRYPOINT [\"sh\", \"-c\", "
          "\"echo act-link=$(readlink /ctx/secret); cat /ctx/secret; echo act-done\"]\n" % IMAGE)
    os.symlink(os.path.join(host, "secret.txt"), os.path.join(ws, "act", "secret"))
    write(os.path.join(ws, "act", "nonce"), NONCE)
    script = "; ".join('echo "%s=$(readlink %s)"' % (n, n) for n in links)
    rc, out = run(tmp, ws, "on: push\njobs:\n  w:\n    runs-on: box\n    steps:\n"
                  "      - run: '%s; cat rel; cat dirlink/in.txt; cat abs 2>/dev/null || true; echo ws-done'\n"
                  "      - uses: ./act\n" % script,
                  "-l", "box=docker://" + IMAGE)
    check("workspace links: the job runs", rc == 0 and "ws-done" in out, out)
    for name, target in links.items():
        check("workspace link %s -> %s copied as a link" % (name, target),
              "| %s=%s\n" % (name, target) in out, out)
    check("workspace links: relative ones resolve in the container",
          "| data\n" in out and "| in\n" in out, out)
    check("workspace links: the host file an absolute one names is not in the job",
          SECRET not in out, out)
    check("local docker action: its context link read out of the container as a link",
          "act-link=" + os.path.join(host, "secret.txt") in out and "act-done" in out, out)


SCENARIOS = {"action-links": sc_action_links, "bind": sc_bind, "ws-links": sc_ws_links}

names = sys.argv[1:] or list(SCENARIOS)
for name in names:
    tmp = tempfile.mkdtemp(prefix="hostile-files-")
    try:
        SCENARIOS[name](tmp)
    except Exception as ex:  # a scenario that breaks is a failure, the others still run
        check("%s: ran to the end" % name, False, repr(ex))
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", tmp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
# the images the docker actions built (tagged act-files-*-NONCE-dockeraction)
for ref in sh("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
    if NONCE in ref:
        sh("docker", "image", "rm", "-f", ref)
check("nothing left behind", not left_behind, " ".join(left_behind))
sys.exit(1 if T.failures else 0)
