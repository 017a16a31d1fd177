#!/usr/bin/env python3
"""Hostile workflow against the masker: a step printing 100,000 `::add-mask::` lines, each
followed by a line of output that holds the value just added (so the matcher is rebuilt
between every two values). Without a cap each rebuild costs the size of all values so far,
and the matcher about 40 bytes per byte of them: the job would not end for hours. With the
caps of `daemon/base/mask.h` (2,048 values, 128 KiB per job) the job must end, every value
within the caps shows as `***`, one warning says the cap was passed, and from then on the
job's output is hidden (`***`) rather than any value being shown in clear. The job's own
secret stays masked throughout. (The memory bound is asserted in tests/unit/test-mask.c.)

Environment: RUNNERCTL, SRCDIR (set by CTest)."""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import lib as e2e  # noqa: E402

RUNNERCTL = os.environ["RUNNERCTL"]
SECRET = "hunter2secretXYZ"
T = e2e.Tally(keep=3000, flush=True)
check = T.check

FLOOD = """\
echo "first $SEC line"
python3 -c '
import sys
w = sys.stdout.write
for k in range(100000):
    v = "flood-%06d-abcdefghijklmnopq" % k
    w("::add-mask::" + v + "\\n")
    w("out " + v + " end\\n")
'
echo "last $SEC line"
"""

WF = """
on: push
jobs:
  flood:
    runs-on: local
    steps:
      - name: flood
        shell: bash
        env:
          SEC: ${{ secrets.S }}
        run: |
""" + "".join("          " + l + "\n" for l in FLOOD.splitlines()) + """
      - name: after
        run: echo "next step $SEC flood-000001-abcdefghijklmnopq"
        env:
          SEC: ${{ secrets.S }}
"""


def main():
    tmp = tempfile.mkdtemp(prefix="hostile-mask-flood-")
    try:
        path = os.path.join(tmp, "wf.yml")
        with open(path, "w") as f:
            f.write(WF)
        p = subprocess.run([RUNNERCTL, "exec", "-l", "local=host", "-C", tmp, "-s", "S=" + SECRET,
                            path], capture_output=True, timeout=800)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        check("the flooding job ends and succeeds", p.returncode == 0, out[-3000:])
        check("no ::add-mask:: value and no secret in clear",
              "flood-" not in out and "hunter" not in out,
              [l for l in out.splitlines() if "flood-" in l or "hunter" in l][:5])
        check("the secret is masked before the flood", "first *** line" in out, out[:2000])
        masked = out.count("out *** end")
        hidden = out.count("| ***\n")
        check("every value within the cap shows as ***, then lines are hidden whole",
              masked == 2048 and hidden >= 100000 - 2048, "%d masked, %d hidden" % (masked, hidden))
        warn = out.count("::add-mask:: was given more than 2048 values or 128 KiB")
        check("one warning says the cap was passed", warn == 1, "%d warnings" % warn)
        check("the next step's output is hidden too", "next step" not in out, out[-2000:])
    finally:
        subprocess.run(["rm", "-rf", tmp])
    for f in e2e.failures:
        check("e2e helper: " + f, False)
    print("%d failed" % T.failures)
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
