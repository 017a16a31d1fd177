#!/usr/bin/env python3
"""runnerctl exec on the busybox docker label, the agent's output over its fast channel (a unix
socket, doc/docker-engine.md §6c) and, with RUNNERD_AGENT_CHANNEL=attach, over the attach
stream: the same integrity checks on both (every one of 60,000 lines, in order, on the
terminal and in --report; a secret the step prints, in lines of its own and split across the
agent's chunks, masked everywhere). Hostile: a step that connects to the socket path as the
agent did gets ENOENT, finds the mounted directory empty and read-only, cannot write into the
agent's descriptors, and the job's output goes on whole. The run directory
($XDG_RUNTIME_DIR/runnerd) holds nothing afterwards."""
import json
import os
import sys
import tempfile

SRCDIR = os.environ["SRCDIR"]
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image; labelled())
T = lib.Tally()
check = T.check

IMAGE, err = lib.test_image()
if IMAGE is None:
    print("FAIL building the busybox test image: " + err)
    sys.exit(1)

SECRET = "s3cr3t-Fast-Channel-42"
N = 60000
# Lines "n N", with the secret at the end of every 10,000th line, then 2 MB without a newline
# (cut into rows and into the agent's 64 KiB chunks) ending with the secret.
WF = r"""
on: push
jobs:
  box:
    runs-on: builder
    steps:
      - run: |
          seq 1 NLINES | awk -v s="${{ secrets.TOKEN }}" '{ if ($1 % 10000 == 0) print "n " $1 " " s; else print "n " $1 }'
          head -c 2000000 /dev/zero | tr '\0' 'a'; echo " ${{ secrets.TOKEN }} end"
      - run: echo after
""".replace("NLINES", str(N))

HOSTILE = r"""
on: push
jobs:
  box:
    runs-on: builder
    steps:
      - run: |
          /.runner/agent --connect /run/runnerd-agent/agent.sock --journal /tmp/j </dev/null >/dev/null 2>/tmp/err
          grep -q 'agent.sock: No such file or directory' /tmp/err && echo "connect refused"
          echo "entries=$(ls -A /run/runnerd-agent | wc -l)"
          touch /run/runnerd-agent/agent.sock 2>/dev/null || echo "no create"
          n=0; for d in /proc/1/fd/*; do { printf '\347RA\032forged' > $d; } 2>/dev/null && n=$((n+1)); done
          echo "forged=$n"
          seq 1 5000 | sed 's/^/h /'
      - run: echo after
"""


def run(tmp, wf, env_extra):
    env = dict(os.environ, TOKEN=SECRET, XDG_RUNTIME_DIR=tmp, **env_extra)
    if "RUNNERD_AGENT_CHANNEL" not in env_extra:
        env.pop("RUNNERD_AGENT_CHANNEL", None)
    rc, out, err, r, _ = lib.exec_report(tmp, wf, ("-s", "TOKEN", "-l", "builder=docker://" + IMAGE),
                                         env=env)
    return rc, out, err, r


def step_lines(out):
    """The step's output lines, as the terminal shows them."""
    return [ln.split("| ", 1)[1] if "| " in ln else "" for ln in out.splitlines()
            if ln.startswith("[box]   | ")]


def report_text(r):
    return json.dumps(r) if r else ""


def integrity(name, env_extra, want_line):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        rc, out, err, r = run(tmp, WF, env_extra)
        check("%s: runnerctl exits 0" % name, rc == 0, "%s %s" % (rc, err[-500:]))
        check("%s: the job says %r" % (name, want_line), want_line in out)
        lines = step_lines(out)
        want = []
        for i in range(1, N + 1):
            want.append("n %d ***" % i if i % 10000 == 0 else "n %d" % i)
        check("%s: every line once, in order" % name, lines[:N] == want, "%d lines; first difference %s" % (
            len(lines), next(((i, a, b) for i, (a, b) in enumerate(zip(lines, want)) if a != b), None)))
        rows = lines[N:lines.index("after")] if "after" in lines else []
        check("%s: the long line whole, cut into rows, its secret masked" % name,
              "".join(rows) == "a" * 2000000 + " *** end" and len(rows) > 1,
              "%d rows, ending %r" % (len(rows), rows[-1][-20:] if rows else None))
        check("%s: the next step ran" % name, "after" in lines)
        check("%s: the secret is nowhere in clear (terminal, stderr, --report)" % name,
              SECRET not in out and SECRET not in err and SECRET not in report_text(r))
        run_dir = os.path.join(tmp, "runnerd")
        left = os.listdir(run_dir) if os.path.isdir(run_dir) else []
        check("%s: nothing left in the run directory" % name, left == [], str(left))


integrity("fast", {}, "the agent's output comes over a unix socket (the fast channel)")
integrity("attach", {"RUNNERD_AGENT_CHANNEL": "attach"},
          "the agent's output comes over the attach stream (RUNNERD_AGENT_CHANNEL=attach)")

with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o700)
    rc, out, err, r = run(tmp, HOSTILE, {})
    lines = step_lines(out)
    check("hostile: the job succeeds", rc == 0, "%s %s" % (rc, err[-500:]))
    check("hostile: the job runs on the fast channel", "(the fast channel)" in out)
    check("hostile: a second connect fails, the directory is empty and read-only, the agent's "
          "descriptors cannot be written",
          lines[:4] == ["connect refused", "entries=0", "no create", "forged=0"], str(lines[:4]))
    check("hostile: the output after the attempts is whole",
          lines[4:5004] == ["h %d" % i for i in range(1, 5001)] and "after" in lines)

# A job container running as another user than root: the agent makes its journal in the
# job's /var/run/act volume, whose top directory the engine makes root's 0755 (it failed with
# "journal /var/run/act/.runner-journal: Permission denied" before the upload made it 01777).
NONROOT = r"""
on: push
jobs:
  box:
    runs-on: builder
    container:
      image: IMAGE
      options: --user 1000:1000
    steps:
      - run: |
          id -u
          stat -c %a /var/run/act
          seq 1 20000 | sed 's/^/u /'
      - run: echo after
""".replace("IMAGE", IMAGE)
for name, extra in (("non-root", {}), ("non-root, attach", {"RUNNERD_AGENT_CHANNEL": "attach"})):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        rc, out, err, r = run(tmp, NONROOT, extra)
        lines = step_lines(out)
        check("%s: the job succeeds" % name, rc == 0, "%s %s %s" % (rc, out[-800:], err[-500:]))
        check("%s: the step runs as uid 1000, the volume's top is sticky and open to all" % name,
              lines[:2] == ["1000", "1777"], str(lines[:2]))
        check("%s: its output whole" % name,
              lines[2:20002] == ["u %d" % i for i in range(1, 20001)] and "after" in lines)

print("%d failed" % T.failures if T.failures else "exec-fastlog: all checks passed")
sys.exit(1 if T.failures else 0)
