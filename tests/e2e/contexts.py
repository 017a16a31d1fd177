#!/usr/bin/env python3
"""End-to-end: contexts under runnerd as Gitea hands a job over (the Gitea double, the real
runnerd and Docker with the offline busybox image).

- workflow and job env that use `${{ github.workspace }}` see the job's workspace (Gitea sends
  an empty github.workspace; the runner fills it in before evaluating env), not "" ("/build");
- a matrix key written as an expression, which Gitea leaves unevaluated in the single-job
  workflow it sends (`${{ needs.prepare.outputs.key }}: [sweet]`), is evaluated with the
  task's needs, as act_runner does.

Environment: RUNNERCTL, RUNNERD, SRCDIR (as tests/e2e/daemon.py; its helpers are tests/e2e/lib.py's)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as e2e  # noqa: E402

PAYLOAD = r"""name: CI
"on":
    push: {}
env:
    WF_DIR: ${{ github.workspace }}/wf
jobs:
    build:
        name: build
        runs-on: matric-builder
        env:
            BUILD_DIR: "${{ github.workspace }}/build"
        strategy:
            matrix:
                ${{ needs.prepare.outputs.key }}: [sweet]
        steps:
            - name: dirs
              run: |
                echo "build=$BUILD_DIR ctx=${{ env.BUILD_DIR }} wf=$WF_DIR ws=$GITHUB_WORKSPACE"
                echo "flavour=${{ matrix.flavour }}"
"""


def main():
    image, err = e2e.test_image()
    if image is None:
        print("building the test image failed:", err)
        return 1
    tmp = tempfile.mkdtemp(prefix="runnerd-e2e-ctx-")
    d = e2e.Double(tmp)
    r = None
    try:
        r = e2e.Runner(d, tmp, "contexts", image)
        r.start()
        job = e2e.enqueue(d, [{"name": "dirs", "run": "true"}], workflowPayload=PAYLOAD,
                          needs={"prepare": {"outputs": {"key": "flavour"}, "result": "RESULT_SUCCESS"}})
        t = e2e.final_task(d, job, 90)
        if t is not None:
            rows = e2e.rows_of(t)
            e2e.check(t["status"] == "success", "contexts: task result %s: %s" % (t["status"], rows))
            want = "build=/workspace/build ctx=/workspace/build wf=/workspace/wf ws=/workspace"
            e2e.check(any(want in x for x in rows),
                      "contexts: github.workspace in workflow and job env: %s" % rows)
            print("ok   github.workspace in workflow and job env" if any(want in x for x in rows)
                  else "FAIL github.workspace in workflow and job env")
            ok = any("flavour=sweet" in x for x in rows)
            e2e.check(ok, "contexts: matrix key from needs: %s" % rows)
            print("ok   matrix key from an expression" if ok else "FAIL matrix key from an expression")
        e2e.check(r.stop() == 0, "contexts: runnerd exits 0 on SIGTERM")
        e2e.check_no_leftovers(r, "contexts")
    finally:
        if r and r.proc and r.proc.poll() is None:
            r.proc.kill()
        if e2e.failures and r and r.logs:
            print(r.log_text()[-6000:])
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return e2e.summary()


if __name__ == "__main__":
    sys.exit(main())
