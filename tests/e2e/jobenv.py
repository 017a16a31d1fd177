#!/usr/bin/env python3
"""The job environment users expect from `docker run`, act and GitHub (issue 14, section 2),
through `runnerctl exec` and through runnerd with the Gitea double, on an image made by
`docker import` with no ENV at all (no PATH, no passwd entry) and on the Debian test image:

  - HOME is set in every step as Docker sets it (the image user's passwd entry, `/` without
    one) and is writable (`git config --global` needs it);
  - PATH is Docker's default when the image has none, and exported: a program started by a
    program finds it;
  - files in the workspace (a copy of -C DIR, or a checkout) have a real mtime, not 1970;
  - GITHUB_SERVER_URL, github.server_url and GITHUB_API_URL carry no trailing slash although
    Gitea sends `http://host:3000/`;
  - the rows sent to Gitea are what act_runner sends: no `::add-mask::` row, `::set-output::`
    as it came, a `::debug::` message alone (with ACTIONS_STEP_DEBUG).

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some parts with `jobenv.py exec|daemon`."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402
import actions  # noqa: E402

check, rows_of = base.check, base.rows_of
RUNNERCTL = base.RUNNERCTL
NOW = time.time()
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TEST_LABEL = "io.runnerd.test=jobenv"

# One step, run by the image's sh: what a user's build sees. `env` is a program started by
# the step's shell, so it shows only what is exported.
PROBE = r"""echo "home=[$HOME]"
touch "$HOME/.probe-$$" && rm -f "$HOME/.probe-$$" && echo home-writable
env | grep -q '^PATH=/' && echo "path-exported=[$(env | sed -n 's/^PATH=//p')]"
echo "mtime=$(stat -c %Y data.txt)"
echo "server=[$GITHUB_SERVER_URL] api=[$GITHUB_API_URL] ctx=[${{ github.server_url }}]"
"""


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


def noenv_image(tmp):
    """A busybox-static rootfs through `docker import` with no ENV (only a LABEL, to find it):
    no PATH and no /etc/passwd, as many imported images are."""
    root = os.path.join(tmp, "rootfs")
    for d in ("bin", "tmp", "workspace", "proc", "sys", "dev"):
        os.makedirs(os.path.join(root, d))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for a in sh(os.path.join(root, "bin", "busybox"), "--list").stdout.split():
        if a != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", a))
    ref = "runnerd-test/noenv:jobenv-%d" % os.getpid()
    tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
    r = subprocess.run(["docker", "import", "--change", "LABEL " + TEST_LABEL, "-", ref],
                       stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if r.returncode != 0:
        raise RuntimeError("docker import: " + r.stderr)
    env = sh("docker", "image", "inspect", "-f", "{{json .Config.Env}}", ref).stdout.strip()
    check(env in ("null", "[]"), "the imported image has no ENV (%s)" % env)
    return ref


def image_of(kind):
    image, err = base.test_image(kind)
    if image is None:
        raise RuntimeError("building the %s test image: %s" % (kind, err))
    return image


def field(lines, key):
    for l in lines:
        i = l.find(key + "=")
        if i >= 0:
            return l[i + len(key) + 1:]
    return None


def check_env(what, lines, home, server=None, api=None):
    text = "\n".join(lines)
    check(field(lines, "home") == "[%s]" % home, "%s: HOME is %s:\n%s" % (what, home, text))
    check("home-writable" in lines, "%s: HOME is writable:\n%s" % (what, text))
    check(field(lines, "path-exported") == "[%s]" % DEFAULT_PATH,
          "%s: PATH exported to a program a program started:\n%s" % (what, text))
    m = field(lines, "mtime")
    check(m is not None and m.isdigit() and int(m) > NOW - 3600 * 24,
          "%s: a workspace file has a real mtime (not 1970): %s" % (what, m))
    if server:
        want = "server=[%s] api=[%s/api/v1] ctx=[%s]" % (server, api, server)
        check(any(l.endswith(want) for l in lines), "%s: no trailing slash in %s:\n%s" % (what, want, text))


# ---------------------------------------------------------------- runnerctl exec

def part_exec(tmp, images):
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    with open(os.path.join(work, "data.txt"), "w") as f:
        f.write("data\n")
    wf = os.path.join(work, "wf.yml")
    with open(wf, "w") as f:
        f.write("on: push\njobs:\n  probe:\n    runs-on: builder\n    steps:\n"
                "      - shell: sh\n        run: |\n" +
                "".join("          " + l + "\n" for l in PROBE.splitlines()))
    for name, (image, home) in images.items():
        p = subprocess.run([RUNNERCTL, "exec", "-C", work, "-l", "builder=docker://" + image, wf],
                           capture_output=True, text=True, timeout=300)
        lines = [l.split("  | ", 1)[1] for l in p.stdout.splitlines() if "  | " in l]
        check(p.returncode == 0, "exec %s: exit 0:\n%s%s" % (name, p.stdout, p.stderr))
        check_env("exec " + name, lines, home)
        print("  exec %s done" % name, flush=True)


# ---------------------------------------------------------------- runnerd

def part_daemon(tmp, images):
    gs = actions.GitServer(tmp, [])
    shas = actions.make_repo(gs.root, "acme/app", [{"data.txt": "data\n"}])
    gs.start()
    d = base.Double(tmp)
    try:
        for name, (image, home) in images.items():
            r = base.Runner(d, tmp, "jobenv-" + name, image)
            with open(r.config, "a") as f:
                f.write("  cache_dir: %s\n" % os.path.join(r.dir, "cache"))
            r.start()
            try:
                steps = [{"uses": "actions/checkout@v4"},
                         {"name": "probe", "shell": "sh", "run": PROBE},
                         {"name": "mask", "run": 'echo "::add-mask::hide-me-now"; echo "shown hide-me-now"; '
                                                 'echo "::set-output name=o::1"; echo "::debug::debug-said"'}]
                j = d.admin("enqueue", {"runsOn": ["matric-builder"], "steps": steps,
                                        "context": actions.context(gs, shas[0]),
                                        "secrets": {"ACTIONS_STEP_DEBUG": "true"}})["jobId"]
                t = base.final_task(d, j, 120)
                if t is None:
                    continue
                check(t["status"] == "success", "daemon %s: the job succeeds:\n%s" % (name, "\n".join(rows_of(t))[-2000:]))
                check_env("daemon " + name, base.step_rows(t, 1), home, server=gs.url, api=d.url)
                masked = base.step_rows(t, 2)
                check("shown ***" in masked and not any("add-mask" in x for x in masked),
                      "daemon %s: ::add-mask:: is not echoed to Gitea: %s" % (name, masked))
                check("::set-output name=o::1" in masked,
                      "daemon %s: ::set-output:: goes to Gitea as act_runner sends it: %s" % (name, masked))
                check("debug-said" in masked and not any("::debug::" in x for x in masked),
                      "daemon %s: with step debug on, ::debug:: sends the message alone (as act_runner): %s"
                      % (name, masked))
                check(not any("hide-me-now" in x for x in rows_of(t)), "daemon %s: the masked value never reaches Gitea" % name)
            finally:
                check(r.stop() == 0, "daemon %s: runnerd exits 0" % name)
                base.check_no_leftovers(r, "daemon " + name)
            print("  daemon %s done" % name, flush=True)
    finally:
        d.stop()
        gs.proc.terminate()
        gs.proc.wait(10)
        gs.log.close()


def main():
    only = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="runnerd-e2e-jobenv-")
    noenv = None
    try:
        noenv = noenv_image(tmp)
        # Docker gives HOME from the user's passwd entry: `/` when the image has none.
        images = {"noenv": (noenv, "/"), "debian": (image_of("debian"), "/root")}
        for name, fn in (("exec", part_exec), ("daemon", part_daemon)):
            if only and name not in only:
                continue
            print("part", name, flush=True)
            try:
                fn(tmp, images)
            except Exception as e:  # a broken part is a failure, not a crash of the suite
                check(False, "%s: %r" % (name, e))
    finally:
        if noenv:
            subprocess.run(["docker", "rmi", "-f", noenv], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("jobenv: %d checks, %d failed" % (base.checks, len(base.failures)))
    for f in base.failures:
        print("FAIL", f.splitlines()[0])
    return 1 if base.failures else 0


if __name__ == "__main__":
    sys.exit(main())
