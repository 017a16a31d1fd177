#!/bin/sh
# runnerctl exec --plan: the sample pipeline's plan (stages, matrix runs, labels), JSON output,
# -j selection, --matrix filter, and a broken workflow's file:line:col errors with exit 2.
set -u
: "${RUNNERCTL:?}" "${SRCDIR:?}"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

check() { # check NAME EXPECTED-EXIT COMMAND...
    name=$1 want=$2
    shift 2
    "$@" >out 2>err
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL $name: exit $got, expected $want"; cat out err; fail=1; return 1
    fi
    echo "ok   $name"
}
contains() { # contains NAME FILE TEXT
    if ! grep -qF -- "$3" "$2"; then
        echo "FAIL $1: $2 lacks '$3'"; cat "$2"; fail=1
    fi
}

check plan 0 "$RUNNERCTL" exec --plan "$SRCDIR/examples/ci.yml"
contains plan out 'event push: 5 jobs in 3 stages'
contains plan out '    run test (sqlite, 1.92.0)  runs-on: matric-builder  matrix: {"toolchain":"1.92.0","db":"sqlite"}'
contains plan out '  job publish  needs: build, integration  if: github.ref =='
contains plan out '    run integration  runs-on: matric-builder-gpu'

check plan-json 0 "$RUNNERCTL" exec --plan --json -j build "$SRCDIR/examples/ci.yml"
python3 - <<'PY' || fail=1
import json
plan = json.load(open("out"))[0]
ids = [j["id"] for j in plan["jobs"]]
assert ids == ["test", "build"], ids
runs = plan["jobs"][0]["runs"]
assert [r["matrix"]["db"] for r in runs] == ["sqlite", "postgres"], runs
assert runs[1]["matrix"]["database_url"] == "postgres://ci@db/ci", runs
print("ok   plan-json content")
PY

check matrix-filter 0 "$RUNNERCTL" exec --plan --json --matrix db:sqlite "$SRCDIR/examples/ci.yml"
python3 -c '
import json,sys
jobs = {j["id"]: j for j in json.load(open("out"))[0]["jobs"]}
assert len(jobs["test"]["runs"]) == 1 and jobs["test"]["runs"][0]["matrix"]["db"] == "sqlite"
print("ok   matrix-filter content")' || fail=1

cat > broken.yml <<'YML'
on: push
jobs:
  a:
    runs-on: x
    steps:
      - name: nothing to do
YML
check broken 2 "$RUNNERCTL" exec --plan broken.yml
contains broken err 'broken.yml:6:'

check no-executor 2 "$RUNNERCTL" exec "$SRCDIR/examples/ci.yml"
contains no-executor err "job 'lint': no executor for runs-on [\"matric-builder\"]"
check other-event 1 "$RUNNERCTL" exec --plan -e release "$SRCDIR/examples/ci.yml"
contains other-event err "not triggered by 'release'"
check missing 2 "$RUNNERCTL" exec --plan does-not-exist.yml
contains missing err 'does-not-exist.yml: No such file or directory'
check bad-usage 2 "$RUNNERCTL" exec --plan --var novalue "$SRCDIR/examples/ci.yml"
contains bad-usage err '--var expects NAME=VALUE'

if [ $fail -eq 0 ]; then echo "exec-plan: all checks passed"; fi
exit $fail
