#!/usr/bin/env python3
"""Hostile workflows against secrets: a workflow author who was given a secret tries to get it
printed in clear anywhere but inside the job, or to drive the terminal that shows the log.

 - a secret split by the 64 KiB row cut (one row ending "...hunter", the next "2secretXYZ"),
   at every offset around the cut, on stdout and stderr;
 - a secret in a job output (and an ::add-mask:: value): dropped with a warning naming the
   output, never sent, stored, reported or passed to a later job;
 - a secret in a step name, a job name, runs-on: masked in the line prefixes, the summary,
   --plan, --plan --json, --report and error messages;
 - an expression error about a value built from a secret (fromJSON(secrets.S)): the message
   does not quote it;
 - ESC, BEL and CR in job and step names: escaped on the terminal.

Each attack runs through `runnerctl exec` (host executor: the terminal and --report) and,
for the row cut, outputs and names, through runnerd against the Gitea double and the real
Docker engine (the rows the double receives, its outputs, the spool rows in the state
database, runnerd's own log). A fragment of the secret anywhere fails the check.

Environment: RUNNERCTL, RUNNERD, SRCDIR (set by CTest)."""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import lib as e2e  # noqa: E402  (the double and runnerd helpers)

RUNNERCTL = os.environ["RUNNERCTL"]
SECRET = "hunter2secretXYZ"
# Any of these in clear is a leak: the whole secret, or a piece a cut or a quote left.
FRAGMENTS = ["hunter2", "hunter", "2secretXYZ", "secretXYZ", "dyn-mask-me"]
ROW = 64 * 1024
T = e2e.Tally(keep=3000, flush=True)
check = T.check


def leaks(text):
    return [f for f in FRAGMENTS if f in text]


def exec_wf(tmp, wf, *args, plan=False):
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write(wf)
    report = os.path.join(tmp, "report.json")
    if os.path.exists(report):
        os.unlink(report)
    extra = ["--plan"] if plan else ["--report", report]
    p = subprocess.run([RUNNERCTL, "exec", "-l", "local=host", "-C", tmp, "-s", "S=" + SECRET,
                        *extra, *args, path], capture_output=True, timeout=300)
    rep = open(report).read() if os.path.exists(report) else ""
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), rep


# Lines of k bytes of 'a', then the secret, so that the row cut at 64 KiB falls k bytes into it
# for every k from 1 to len-1 (and just before and after it).
CUT_SCRIPT = r"""
python3 - <<'EOF'
import sys
s = "SECRET"
for k in range(0, len(s) + 1):
    sys.stdout.write("a" * (ROW - k) + s + "b" * 10 + "\n")
    sys.stderr.write("c" * (ROW - k) + s + "\n")
# A line that is one secret after another across several cuts.
sys.stdout.write((s + "-") * (3 * ROW // (len(s) + 1)) + "\n")
EOF
""".replace("SECRET", SECRET).replace("ROW", str(ROW))


def local_attacks(tmp):
    # Item 8: the row cut.
    wf = """
on: push
jobs:
  cut:
    runs-on: local
    steps:
      - name: long lines
        shell: bash
        run: |
""" + "".join("          " + l + "\n" for l in CUT_SCRIPT.strip().splitlines())
    rc, out, err, rep = exec_wf(tmp, wf)
    check("exec: the long-line job ran", rc == 0, out[-2000:] + err)
    check("exec: a secret split by the 64 KiB row cut is masked on the terminal",
          not leaks(out + err), "leaked %s" % leaks(out + err))
    stars = out.count("***")
    check("exec: every secret across a cut shows as ***", stars >= 2 * (len(SECRET) + 1),
          "%d masks" % stars)
    rows = [l for l in out.splitlines() if l.startswith("[cut]   |")]
    check("exec: rows stay at most 64 KiB", rows and max(len(l) for l in rows) <= ROW + 64,
          "longest %d" % max([len(l) for l in rows] or [0]))
    check("exec: --report clean", rep and not leaks(rep), "leaked %s" % leaks(rep))

    # Items 9, 10, 11, 19: outputs, names, errors, control characters.
    wf = r"""
on: push
jobs:
  one:
    name: "build ${{ secrets.S }} \e]0;owned\a\e[2J\rX"
    runs-on: [local, "lbl-${{ secrets.S }}"]
    outputs:
      leak: ${{ steps.s.outputs.v }}
      masked: ${{ steps.s.outputs.m }}
      plain: ${{ steps.s.outputs.p }}
      direct: x${{ secrets.S }}
    steps:
      - id: s
        name: "step ${{ secrets.S }} \e[31mred\a\r"
        run: |
          echo "::add-mask::dyn-mask-me"
          echo "v=before $SEC after" >> "$GITHUB_OUTPUT"
          echo "m=dyn-mask-me" >> "$GITHUB_OUTPUT"
          echo "p=fine" >> "$GITHUB_OUTPUT"
        env:
          SEC: ${{ secrets.S }}
      - name: bad json
        run: echo "${{ fromJSON(secrets.S) }}"
      - name: bad format
        if: always()
        run: echo "${{ format(format('{{{0}', secrets.S)) }}"
  two:
    needs: one
    if: always()
    runs-on: local
    steps:
      - run: echo "got [${{ needs.one.outputs.leak }}] [${{ needs.one.outputs.plain }}]"
"""
    rc, out, err, rep = exec_wf(tmp, wf)
    allout = out + err + rep
    check("exec: no fragment of the secret on the terminal, stderr or the report",
          not leaks(allout), "leaked %s in:\n%s\n%s\n%s" % (leaks(allout), out, err, rep))
    check("exec: a job output holding a secret is dropped with a warning naming it",
          "warning: Skip output 'leak' since it may contain secret." in out and
          "warning: Skip output 'direct' since it may contain secret." in out and
          "warning: Skip output 'masked' since it may contain secret." in out, out)
    try:
        jobs = {j["id"]: j for j in json.loads(rep)["jobs"]}
    except (ValueError, KeyError):
        jobs = {}
    check("exec: --report outputs keep only the clean one",
          jobs.get("one", {}).get("outputs") == {"plain": "fine"}, rep)
    check("exec: a later job does not get the dropped output", "got [] [fine]" in out, out)
    check("exec: step and job names masked in the report",
          "build ***" in jobs.get("one", {}).get("name", "") and
          any("step ***" in s.get("name", "") for s in jobs.get("one", {}).get("steps", [])), rep)
    check("exec: names masked in prefixes and the summary",
          "[build *** " in out and "> step *** " in out and "\nbuild *** " in out, out)
    check("exec: fromJSON error does not quote the value",
          "Invalid JSON: invalid token at line 1" in out, out)
    check("exec: format error does not quote the value",
          "The format string is invalid at offset 0" in out, out)
    raw = (out + err).encode()
    check("exec: no ESC, BEL or CR reaches the terminal from names",
          b"\x1b" not in raw and b"\x07" not in raw and b"\r" not in raw,
          repr([l for l in raw.split(b"\n") if b"\x1b" in l or b"\x07" in l or b"\r" in l][:5]))
    check("exec: control characters in names are shown escaped",
          "\\x1b]0;owned\\x07\\x1b[2J\\x0dX" in out and "\\x1b[31mred\\x07\\x0d" in out, out)

    # --plan and --plan --json know the secrets given with -s.
    rc, out, err, _ = exec_wf(tmp, wf, plan=True)
    check("exec --plan: names and runs-on masked and escaped",
          rc == 0 and not leaks(out + err) and "lbl-***" in out and "build ***" in out and
          "\x1b" not in out, out + err)
    rc, out, err, _ = exec_wf(tmp, wf, "--json", plan=True)
    check("exec --plan --json: names and runs-on masked",
          rc == 0 and not leaks(out + err) and "lbl-***" in out, out + err)

    # Errors at plan time (job name) and label matching (runs-on) quote no secret.
    rc, out, err, rep = exec_wf(tmp, r"""
on: push
jobs:
  bad:
    name: "${{ fromJSON(secrets.S) }}"
    runs-on: local
    steps:
      - run: echo hi
""")
    check("exec: a plan-time expression error does not quote the secret",
          rc != 0 and "Invalid JSON" in err and not leaks(out + err), out + err)
    rc, out, err, rep = exec_wf(tmp, r"""
on: push
jobs:
  nolabel:
    runs-on: "x-${{ secrets.S }}"
    steps:
      - run: echo hi
""")
    check("exec: an unmapped runs-on label built from a secret is masked in the error",
          rc != 0 and "no executor for runs-on" in err and "x-***" in err and not leaks(out + err),
          out + err)


def daemon_attacks(tmp, image):
    d = e2e.Double(tmp)
    r = None
    try:
        r = e2e.Runner(d, tmp, "secrets", image)
        r.start()
        steps = [
            {"id": "a", "name": "cut ${{ secrets.S }}", "shell": "sh", "run":
             # busybox: the same lines as CUT_SCRIPT, with printf and head
             'for k in $(seq 0 %d); do head -c $((%d - k)) /dev/zero | tr "\\0" a; '
             'printf "%%s%%s\\n" "$SEC" bbbbbbbbbb; done; '
             'echo "v=before $SEC after" >> "$GITHUB_OUTPUT"; echo "p=fine" >> "$GITHUB_OUTPUT"'
             % (len(SECRET), ROW), "env": {"SEC": "${{ secrets.S }}"}},
            {"name": "bad json", "run": 'echo "${{ fromJSON(secrets.S) }}"'},
        ]
        job = e2e.enqueue(d, steps, secrets={"S": SECRET}, name="build ${{ secrets.S }}",
                          outputs={"leak": "${{ steps.a.outputs.v }}",
                                   "plain": "${{ steps.a.outputs.p }}"})
        t = e2e.final_task(d, job, 120)
        if t is None:
            check("runnerd: the task finished", False)
            return
        rows = e2e.rows_of(t)
        text = "\n".join(rows)
        check("runnerd: rows sent to Gitea hold no fragment of a secret split by the row cut",
              not leaks(text), "leaked %s" % leaks(text))
        check("runnerd: the split secrets show as ***",
              sum(x.count("***") for x in e2e.step_rows(t, 0)) >= len(SECRET) + 1,
              "%s" % [x[-40:] for x in e2e.step_rows(t, 0)])
        check("runnerd: UpdateTask outputs drop the one holding a secret",
              t["outputs"] == {"plain": "fine"}, json.dumps(t["outputs"]))
        check("runnerd: a warning row names the dropped output",
              any("Skip output 'leak' since it may contain secret." in x for x in rows),
              "\n".join(x[-200:] for x in rows[-8:]))
        check("runnerd: fromJSON error quotes no secret",
              any("Invalid JSON: invalid token at line 1" in x for x in rows),
              "\n".join(x[-200:] for x in rows[-8:]))
        # A job the runner cannot take: its runs-on (built from the secret) matches no label
        # of the runner; the reason goes to the log rows, the task record and runnerd's log.
        payload = ('name: CI\n"on":\n    push: {}\njobs:\n    build:\n'
                   '        runs-on: "x-${{ secrets.S }}"\n        steps:\n'
                   '            - run: echo hi\n')
        job2 = e2e.enqueue(d, [{"run": "echo hi"}], secrets={"S": SECRET}, workflowPayload=payload)
        t2 = e2e.final_task(d, job2, 60)
        rows2 = e2e.rows_of(t2) if t2 else []
        check("runnerd: a failure reason built from a secret is masked in the rows",
              any("x-***" in x for x in rows2) and not leaks("\n".join(rows2)), "\n".join(rows2))
        db = sqlite3.connect("file:%s?mode=ro" % r.state, uri=True)
        try:
            spool = "\n".join(c for (c,) in db.execute("SELECT content FROM log_rows"))
            # The task record's own columns (not `task`: the task as Gitea sent it, secrets
            # included, kept for a restart).
            stored = json.dumps(db.execute("SELECT job, repo, steps, outputs, sent_outputs, "
                                           "checkpoint, exec, reason FROM tasks").fetchall())
        finally:
            db.close()
        check("runnerd: spool rows in the state database hold no fragment",
              spool and not leaks(spool), "leaked %s" % leaks(spool))
        check("runnerd: stored outputs and reason hold no fragment", not leaks(stored), stored)
        check("runnerd: its own log holds no fragment", not leaks(r.log_text()),
              "leaked %s" % leaks(r.log_text()))
        e2e.check_no_leftovers(r, "secrets")
    finally:
        if r:
            r.stop()
        d.stop()
        # Whatever a failed check left behind: only objects of this test's runner.
        e2e.remove_leftovers(tmp)


def main():
    tmp = tempfile.mkdtemp(prefix="hostile-secrets-")
    try:
        local_attacks(tmp)
        image, err = e2e.test_image()
        if image is None:
            check("building the busybox test image", False, err)
        else:
            daemon_attacks(tmp, image)
    finally:
        subprocess.run(["rm", "-rf", tmp])
    for f in e2e.failures:
        check("e2e helper: " + f, False)
    print("%d failed" % T.failures)
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
