#!/bin/sh
# examples/pipeline.yml through `runnerctl exec` in real containers, both builder labels mapped to
# the offline busybox test image: every job runs in order (lint, test, integration-test, build,
# publish) and succeeds, the outputs pass from job to job, and publish runs for refs/heads/main
# but is skipped for a feature branch (its `if:`). Checks the --report JSON and the output.
set -u
: "${RUNNERCTL:?}" "${SRCDIR:?}"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=$("$SRCDIR/tests/images/build.sh" busybox | tail -n 1) || { echo "FAIL: no busybox test image"; exit 1; }
mkdir "$tmp/ws"
echo "a file the jobs see in their workspace" >"$tmp/ws/README"

# run NAME REF: runs the pipeline for a push to REF; output in $tmp/NAME.out, report NAME.json.
run() {
    printf '{"ref":"%s"}\n' "$2" >"$tmp/$1.event"
    "$RUNNERCTL" exec -C "$tmp/ws" --event-path "$tmp/$1.event" --report "$tmp/$1.json" \
        -l "matric-builder=docker://$img" -l "matric-builder-gpu=docker://$img" \
        "$SRCDIR/examples/pipeline.yml" >"$tmp/$1.out" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $1: runnerctl exec exited $rc"; cat "$tmp/$1.out"; fail=1; return 1
    fi
    echo "ok   $1: runnerctl exec exited 0"
}

# check NAME PUBLISH: the report and the output of run NAME; PUBLISH is success or skipped.
check() {
    python3 - "$tmp/$1.json" "$tmp/$1.out" "$2" <<'PY' || { cat "$tmp/$1.out"; fail=1; }
import json, re, sys
report, out, publish = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
jobs = {j["id"]: j for j in json.load(open(report))["jobs"]}
order = ["lint", "test", "integration-test", "build", "publish"]
want = {j: "success" for j in order}
want["publish"] = publish
# A job skipped by its `if:` never ran: the report may leave it out; the output says so.
if publish == "skipped":
    assert "[publish] job skipped" in out, "no '[publish] job skipped' line"
    assert re.search(r"^publish +skipped$", out, re.M), "summary lacks 'publish skipped'"
    jobs.setdefault("publish", {"result": "skipped", "steps": []})
assert sorted(jobs) == sorted(order), f"jobs in the report: {list(jobs)}"
got = {j: jobs[j]["result"] for j in order}
assert got == want, f"results {got}, expected {want}"
for j in order[:4]:
    bad = [s for s in jobs[j]["steps"] if s["conclusion"] != "success"]
    assert jobs[j]["steps"] and not bad, f"{j}: steps {jobs[j]['steps']}"
# The needs chain runs them one after the other: each starts after the previous finished.
started = [m.group(1) for m in re.finditer(r"^\[([a-z-]+)\] job started$", out, re.M)]
ran = [j for j in order if want[j] == "success"]
assert started == ran, f"started {started}, expected {ran}"
for a, b in zip(ran, ran[1:]):
    assert out.index(f"[{a}] job success") < out.index(f"[{b}] job started"), f"{b} before {a} ended"
# Outputs: test -> integration-test, build -> publish.
assert jobs["test"]["outputs"] == {"passed": "3"}, jobs["test"]["outputs"]
assert "integration tests after 3 passing unit tests" in out, "integration-test lacks test's output"
art = jobs["build"]["outputs"].get("artifact", "")
assert re.fullmatch(r"demo-[0-9a-f]{12}\.tar", art), f"build artifact output {art!r}"
assert jobs["build"]["outputs"]["sha256"].startswith(art[5:17]), jobs["build"]["outputs"]
if publish == "success":
    assert f"[publish]   | publishing {art}" in out, "publish did not print build's artifact"
else:
    assert "[publish] job started" not in out, "publish ran"
print(f"ok   report and output: 5 jobs in order, publish {publish}")
PY
}

run main refs/heads/main && check main success
run feature refs/heads/feature/x && check feature skipped

[ "$fail" -eq 0 ] && echo "PASS" || echo "FAILED"
exit "$fail"
