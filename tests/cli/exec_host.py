#!/usr/bin/env python3
"""runnerctl exec on the host executor (the real runner-agent as a child process):
step output, env files, outputs across steps and jobs, masking (secrets and add-mask, also
inside workflow commands), annotations, continue-on-error, if: always()/failure(), working
directory, shells, the workspace copy, step timeouts, Ctrl-C cancellation, --report, exit codes."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image)

RUNNERCTL = os.environ["RUNNERCTL"]
T = lib.Tally()
check = T.check


def run(tmp, wf, *args, env=None):
    rc, out, err, rep, _ = lib.exec_report(tmp, wf, ("-l", "local=host", *args),
                                           env=dict(os.environ, **(env or {})), timeout=120)
    return rc, out, err, rep


def lines(out, job):
    prefix = "[%s] " % job
    return [l[len(prefix):] for l in out.splitlines() if l.startswith(prefix)]


MAIN = r"""
on: push
env:
  GREETING: hi
jobs:
  one:
    runs-on: local
    outputs:
      val: ${{ steps.s1.outputs.val }}
    steps:
      - id: s1
        name: First
        run: |
          echo "$GREETING $(cat data.txt)"
          echo "val=42" >> "$GITHUB_OUTPUT"
          echo "NEXT=from-env-file" >> "$GITHUB_ENV"
          echo "$PWD" | grep -q workspace && echo "in workspace"
          echo "::warning file=x.c,line=3::careful"
          echo "the secret is s3cr3t-value"
          echo "::add-mask::dyn-mask-me"
          echo "dynamic dyn-mask-me here"
          echo "::error::also s3cr3t-value"
          echo "to stderr" >&2
          echo "::group::Details"
          echo "inside the group"
          echo "::endgroup::"
          echo "after the group"
      - name: Second
        run: echo "next=$NEXT out=${{ steps.s1.outputs.val }} sh=$0"
        shell: sh
      - name: Third
        run: exit 3
        continue-on-error: true
      - name: Never
        run: echo never
        if: failure()
      - name: Subdir
        working-directory: sub
        run: pwd | sed 's#.*/##'
  two:
    needs: one
    runs-on: local
    steps:
      - run: echo "got ${{ needs.one.outputs.val }}"
      - run: exit 1
      - run: echo skipped-by-failure
      - run: echo "cleanup ${{ job.status }}"
        if: always()
"""

with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "data.txt"), "w") as f:
        f.write("file-content\n")
    os.mkdir(os.path.join(tmp, "sub"))
    rc, out, err, rep = run(tmp, MAIN, "-s", "TOK=s3cr3t-value")
    one = lines(out, "one")
    two = lines(out, "two")
    check("exit status 1 when a job fails", rc == 1, "rc=%d err=%s" % (rc, err))
    check("step output", "  | hi file-content" in one, "\n".join(one))
    check("workspace is a copy", "  | in workspace" in one, "\n".join(one))
    check("annotation", "  warning: x.c:3: careful" in one, "\n".join(one))
    check("secret masked", "  | the secret is ***" in one, "\n".join(one))
    check("secret masked in a command", "  error: also ***" in one, "\n".join(one))
    check("add-mask", "  | dynamic *** here" in one, "\n".join(one))
    check("add-mask: the command line itself is not echoed (as act_runner)",
          not any("add-mask" in l for l in one), "\n".join(one))
    # stdout and stderr are separate pipes: the stderr line may land inside the group (indented).
    check("stderr", any(l.strip() == "! to stderr" for l in one), "\n".join(one))
    check("groups: title, indented lines, then back",
          "  > Details" in one and "    | inside the group" in one and "  | after the group" in one,
          "\n".join(one))
    check("no secret anywhere", "s3cr3t-value" not in out and "dyn-mask-me" not in out)
    check("GITHUB_ENV and step outputs", any(l.startswith("  | next=from-env-file out=42 sh=")
                                             for l in one), "\n".join(one))
    check("exit code message", "  error: Process completed with exit code 3." in one)
    check("continue-on-error", "  ok (continue-on-error)" in " ".join(one) or
          any(l.startswith("  ok (continue-on-error)") for l in one), "\n".join(one))
    check("if: failure() skipped", "  | never" not in one)
    check("working-directory", "  | sub" in one, "\n".join(one))
    check("needs outputs", "  | got 42" in two, "\n".join(two))
    check("implicit success() skips after failure", "  | skipped-by-failure" not in two)
    check("always() runs with job.status", "  | cleanup failure" in two, "\n".join(two))
    check("summary", "one                                      success" in out and
          "two                                      failure" in out)
    jobs = {j["id"]: j for j in rep["jobs"]} if rep else {}
    check("report results", jobs.get("one", {}).get("result") == "success" and
          jobs.get("two", {}).get("result") == "failure", json.dumps(rep))
    check("report outputs", jobs.get("one", {}).get("outputs") == {"val": "42"})
    steps = jobs.get("one", {}).get("steps", [])
    check("report steps", [(s["name"], s["outcome"], s["conclusion"]) for s in steps] == [
        ("First", "success", "success"), ("Second", "success", "success"),
        ("Third", "failure", "success"), ("Never", "skipped", "skipped"),
        ("Subdir", "success", "success")], json.dumps(steps))

    # Output users read: tabs stay tabs, a CR starts the line over (GitHub's log viewer),
    # CRLF endings vanish, other control characters stay escaped; workflow commands echo as
    # act_runner writes them; --report lists skipped jobs.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  o:
    runs-on: local
    steps:
      - run: |
          printf 'a\tb\n'
          printf '10%%\r50%%\r100%% done\n'
          printf 'crlf\r\n'
          printf 'esc\033[2Jx\\y\n'
          echo "::set-output name=x::1"
          echo "::add-matcher::m.json"
          printf '::warning::hidden\rshown\tcol\n'
  sk:
    needs: o
    if: false
    runs-on: local
    steps:
      - run: echo never
  sk2:
    needs: sk
    runs-on: local
    steps:
      - run: echo never
""")
    o = lines(out, "o")
    check("output: a tab is shown as a tab", "  | a\tb" in o, repr(o))
    check("output: CR shows the text after the last one", "  | 100% done" in o and
          not any("50%" in l for l in o), repr(o))
    check("output: a CRLF ending is dropped", "  | crlf" in o, repr(o))
    check("output: ESC still escaped, backslash as is", "  | esc\\x1b[2Jx\\y" in o, repr(o))
    check("output: no raw CR or ESC on the terminal", "\r" not in out and "\x1b" not in out,
          repr(out))
    check("output: an annotation hides nothing behind a CR (shown \\x0d), tabs as tabs",
          "  warning: hidden\\x0dshown\tcol" in o, repr(o))
    check("commands: set-output and add-matcher echoed as act_runner does",
          "  | ::set-output name=x::1" in o and "  | ::add-matcher::m.json" in o, repr(o))
    jobs = {j["id"]: j for j in rep["jobs"]} if rep else {}
    check("report lists skipped jobs", jobs.get("sk", {}).get("result") == "skipped" and
          jobs.get("sk2", {}).get("result") == "skipped" and
          jobs.get("o", {}).get("result") == "success" and len(rep["jobs"]) == 3, json.dumps(rep))

    # HOME and PATH reach every step, exported, even when runnerctl itself has no PATH.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  h:
    runs-on: local
    steps:
      - run: /bin/sh -c 'echo "home=[$HOME]"; /usr/bin/env | grep -c "^PATH=/"'
        shell: /bin/sh -e {0}
""", env={"HOME": "/tmp/envout-home"})
    h = lines(out, "h")
    check("host: HOME and PATH exported to a step's children",
          "  | home=[/tmp/envout-home]" in h and "  | 1" in h, repr(h) + err)

    # A matrix, all green: exit 0.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  m:
    runs-on: ${{ matrix.l }}
    strategy:
      matrix:
        l: [local]
        n: [1, 2]
    steps:
      - run: echo "n=${{ matrix.n }}"
""")
    check("matrix exit 0", rc == 0, out + err)
    check("matrix runs", "[m (local, 1)]   | n=1" in out and "[m (local, 2)]   | n=2" in out, out)
    check("report has one entry per matrix run", rep and len(rep["jobs"]) == 2)

    # Step timeout.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  t:
    runs-on: local
    steps:
      - run: sleep 60
        timeout-minutes: 0.02
      - run: echo after
        if: always()
""")
    t = lines(out, "t")
    check("step timeout fails the step", "  error: The step timed out after 1.2 seconds." in t,
          "\n".join(t))
    check("step timeout: always() still runs", "  | after" in t, "\n".join(t))
    check("step timeout: exit 1", rc == 1)

    # Job timeout: the running step is stopped, always() steps run, the job fails.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  jt:
    runs-on: local
    timeout-minutes: 0.02
    steps:
      - run: sleep 60
      - run: echo after-timeout
        if: always()
""")
    jt = lines(out, "jt")
    check("job timeout message",
          "  error: The job has exceeded the maximum execution time of 0.02 minutes." in jt,
          "\n".join(jt))
    check("job timeout: running step cancelled", "  error: The step was cancelled." in jt, "\n".join(jt))
    check("job timeout: always() ran", "  | after-timeout" in jt, "\n".join(jt))
    check("job timeout: job failure, exit 1", rc == 1 and rep and rep["jobs"][0]["result"] == "failure",
          out)

    # hashFiles() in a step: SHA-256 of each file's SHA-256, as GitHub computes it.
    import hashlib
    want = hashlib.sha256(hashlib.sha256(b"file-content\n").digest()).hexdigest()
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  h:
    runs-on: local
    steps:
      - run: echo "h=${{ hashFiles('**/data.txt') }} none=[${{ hashFiles('*.nope') }}]"
      - run: echo "conditional"
        if: hashFiles('**/data.txt') != ''
""")
    h = lines(out, "h")
    check("hashFiles value", "  | h=%s none=[]" % want in h, "\n".join(h) + err)
    check("hashFiles in if:", "  | conditional" in h, "\n".join(h))

    # -c: act_runner's config.yaml gives labels and envs; the command line wins.
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write("runner:\n  capacity: 1\n  envs:\n    FROM_CFG: cfg\n    BOTH: cfg\n"
                "  labels:\n    - cfglabel:host\n")
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write("on: push\njobs:\n  c:\n    runs-on: cfglabel\n    steps:\n"
                "      - run: echo \"$FROM_CFG $BOTH\"\n")
    p = subprocess.run([RUNNERCTL, "exec", "-C", tmp, "-c", cfg, "--env", "BOTH=cli", path],
                       capture_output=True, text=True, timeout=120)
    check("config labels and envs", p.returncode == 0 and "[c]   | cfg cli" in p.stdout,
          p.stdout + p.stderr)
    with open(cfg, "w") as f:
        f.write("runner:\n  capacty: 1\n")
    p = subprocess.run([RUNNERCTL, "exec", "-C", tmp, "-c", cfg, path], capture_output=True,
                       text=True, timeout=120)
    check("config error exit 2", p.returncode == 2 and
          cfg + ":2:3: runner: unknown key 'capacty'" in p.stderr, p.stderr)

    # Local composite actions (doc/workflow-semantics.md §12.6): inputs and defaults, outputs,
    # nested composites with their own inputs, continue-on-error inside, the caller's env: not
    # leaking, GITHUB_ENV reaching later steps, a broken action.yml named with its line.
    acts = os.path.join(tmp, ".github", "actions")
    for name, text in {
        "outer": "name: outer\ninputs:\n  who:\n    default: you\noutputs:\n  res:\n"
                 "    value: ${{ steps.in.outputs.res }}-${{ steps.sh.outcome }}\n"
                 "runs:\n  using: composite\n  steps:\n"
                 "    - id: sh\n      shell: sh\n      continue-on-error: true\n"
                 "      run: echo \"outer $INPUT_WHO caller=$CALLER\"; exit 2\n"
                 "    - id: in\n      uses: ./.github/actions/inner\n      with:\n        n: ${{ inputs.who }}!\n"
                 "    - shell: sh\n      run: echo \"outer sees ${{ steps.in.outputs.res }} job=${{ job.status }}\"\n",
        "inner": "name: inner\ninputs:\n  n:\n    required: true\noutputs:\n  res:\n    value: ${{ steps.x.outputs.v }}\n"
                 "runs:\n  using: composite\n  steps:\n"
                 "    - id: x\n      shell: sh\n      run: |\n"
                 "        echo \"inner n=$INPUT_N who=${INPUT_WHO:-none} caller=$CALLER\"\n"
                 "        echo \"v=got-$INPUT_N\" >> \"$GITHUB_OUTPUT\"\n"
                 "        echo FROM_INNER=1 >> \"$GITHUB_ENV\"\n",
        "broken": "name: broken\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      nope: 1\n",
        "self": "name: self\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo level\n"
                "    - uses: ./.github/actions/self\n",
    }.items():
        os.makedirs(os.path.join(acts, name), exist_ok=True)
        with open(os.path.join(acts, name, "action.yml"), "w") as f:
            f.write(text)
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  comp:
    runs-on: local
    steps:
      - id: o
        uses: ./.github/actions/outer
        env:
          CALLER: set
      - run: echo "res=${{ steps.o.outputs.res }} inner-env=$FROM_INNER caller=${CALLER:-unset}"
""")
    c = lines(out, "comp")
    check("composite: job succeeds", rc == 0, out + err)
    check("composite: inputs default, caller env inside", "  | outer you caller=set" in c, "\n".join(c))
    check("composite: nested inputs only", "  | inner n=you! who=none caller=set" in c, "\n".join(c))
    check("composite: nested outputs and continue-on-error", "  | outer sees got-you! job=success" in c,
          "\n".join(c))
    check("composite: outputs, GITHUB_ENV, no env leak",
          "  | res=got-you!-failure inner-env=1 caller=unset" in c, "\n".join(c))
    # After a failed step, a composite run with if: always() runs its steps: their success()
    # is about the action's own steps (GitHub's ADR 1438).
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  a:\n    runs-on: local\n    steps:\n"
                                 "      - run: exit 1\n      - uses: ./.github/actions/inner\n"
                                 "        if: always()\n        with:\n          n: late\n")
    a = lines(out, "a")
    check("composite: if: always() after a failure runs the nested steps",
          rc == 1 and "  | inner n=late who=none caller=" in a, "\n".join(a) + err)
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  b:\n    runs-on: local\n    steps:\n"
                                 "      - uses: ./.github/actions/broken\n      - run: echo not-reached\n")
    b = "\n".join(lines(out, "b"))
    check("composite: a broken action.yml fails the step naming its line",
          rc == 1 and "broken/action.yml:5:" in b and "not-reached" not in b, b + err)
    # A composite that calls itself stops at GitHub's depth limit, failing every level.
    rc, out, err, rep = run(tmp, "on: push\njobs:\n  r:\n    runs-on: local\n    steps:\n"
                                 "      - uses: ./.github/actions/self\n      - run: echo not-reached\n")
    rr = lines(out, "r")
    check("composite: nesting deeper than 10 levels is refused",
          rc == 1 and sum(1 for l in rr if l == "  | level") == 10 and
          any("composite actions nest deeper than 10 levels" in l for l in rr) and
          "  | not-reached" not in rr, "\n".join(rr) + err)

    # Inside a composite, the env context holds the calling step's env: and the job and
    # workflow env (in if:, expressions and the outputs' values), as the processes' env does;
    # the caller's env still does not leak to later steps.
    os.makedirs(os.path.join(acts, "envctx"), exist_ok=True)
    with open(os.path.join(acts, "envctx", "action.yml"), "w") as f:
        f.write("name: envctx\noutputs:\n  seen:\n    value: x=${{ env.X }} wf=${{ env.WFV }}\n"
                "runs:\n  using: composite\n  steps:\n"
                "    - if: env.X != '1'\n      shell: sh\n      run: echo wrongly-ran\n"
                "    - if: env.X == '1' && env.JOBV == 'j'\n      shell: sh\n"
                "      run: echo \"ctx x=${{ env.X }} job=${{ env.JOBV }} wf=${{ env.WFV }} proc=$X\"\n")
    rc, out, err, rep = run(tmp, r"""
on: push
env:
  WFV: w
jobs:
  ec:
    runs-on: local
    env:
      JOBV: j
    steps:
      - id: e
        uses: ./.github/actions/envctx
        env:
          X: "1"
      - run: echo "after out=${{ steps.e.outputs.seen }} x=${{ env.X }}/${X:-unset}"
      - uses: ./.github/actions/inner
        with:
          n: ${{ env.FROM_STEP }}
        env:
          FROM_STEP: via-step-env
""")
    ec = lines(out, "ec")
    check("composite: with: sees the step's own env:",
          any(l.startswith("  | inner n=via-step-env who=none") for l in ec), "\n".join(ec))
    check("composite env context: if: sees the caller's env", rc == 0 and
          "  | wrongly-ran" not in ec, "\n".join(ec) + err)
    check("composite env context: expressions see caller, job and workflow env",
          "  | ctx x=1 job=j wf=w proc=1" in ec, "\n".join(ec))
    check("composite env context: outputs see it; no leak to later steps",
          "  | after out=x=1 wf=w x=/unset" in ec, "\n".join(ec))

    # github is complete when workflow and job env are evaluated: github.workspace is the
    # job's workspace there too (not "", which gave "/build").
    rc, out, err, rep = run(tmp, r"""
on: push
env:
  WF_DIR: ${{ github.workspace }}/wf
jobs:
  ws:
    runs-on: local
    env:
      BUILD_DIR: "${{ github.workspace }}/build"
      JOB_ID: ${{ github.job }}
    steps:
      - run: |
          [ "$BUILD_DIR" = "$GITHUB_WORKSPACE/build" ] && echo build-dir-ok
          [ "${{ env.BUILD_DIR }}" = "$GITHUB_WORKSPACE/build" ] && echo build-ctx-ok
          [ "$WF_DIR" = "$GITHUB_WORKSPACE/wf" ] && echo wf-dir-ok
          echo "dir=$BUILD_DIR job=$JOB_ID"
""")
    ws = lines(out, "ws")
    check("job env: github.workspace is set when job env is evaluated",
          rc == 0 and "  | build-dir-ok" in ws and "  | build-ctx-ok" in ws, "\n".join(ws) + err)
    check("workflow env: github.workspace is set", "  | wf-dir-ok" in ws, "\n".join(ws))
    check("job env: github.job", any(l.startswith("  | dir=/") and l.endswith(" job=ws")
                                     for l in ws), "\n".join(ws))

    # A matrix key written as an expression is evaluated (act and Gitea do), here from needs.
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  prepare:
    runs-on: local
    outputs:
      key: ${{ steps.k.outputs.key }}
    steps:
      - id: k
        run: echo "key=flavour" >> "$GITHUB_OUTPUT"
  build:
    needs: prepare
    runs-on: local
    strategy:
      matrix:
        ${{ needs.prepare.outputs.key }}: [sweet, sour]
    steps:
      - run: echo "got ${{ matrix.flavour }}"
""")
    check("matrix key from an expression: accepted and evaluated",
          rc == 0 and "[build (sweet)]   | got sweet" in out and "[build (sour)]   | got sour" in out,
          out + err)

    # Ctrl-C inside a composite's nested step: it stops, the composite fails, always() runs.
    os.makedirs(os.path.join(acts, "slow"), exist_ok=True)
    with open(os.path.join(acts, "slow", "action.yml"), "w") as f:
        f.write("name: slow\nruns:\n  using: composite\n  steps:\n"
                "    - shell: sh\n      run: echo nested-started; sleep 60\n"
                "    - shell: sh\n      run: echo nested-not-this\n")
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write("on: push\njobs:\n  c:\n    runs-on: local\n    steps:\n"
                "      - uses: ./.github/actions/slow\n"
                "      - run: echo \"after ${{ job.status }}\"\n        if: always()\n")
    proc = subprocess.Popen([RUNNERCTL, "exec", "-l", "local=host", "-C", tmp, path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if "| nested-started" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, errs = proc.communicate(timeout=60)
    seen += rest
    c = lines(seen, "c")
    check("composite cancel: nested step stopped", "  error: The step was cancelled." in c, seen + errs)
    check("composite cancel: later nested step skipped", "  | nested-not-this" not in c, seen)
    check("composite cancel: always() step ran", "  | after cancelled" in c, seen)
    check("composite cancel: exit 1", proc.returncode == 1, str(proc.returncode))

    # Unknown label: exit 2 before running anything.
    path = os.path.join(tmp, "wf.yml")
    with open(path, "w") as f:
        f.write("on: push\njobs:\n  a:\n    runs-on: nowhere\n    steps: [{run: echo}]\n")
    p = subprocess.run([RUNNERCTL, "exec", "-C", tmp, path], capture_output=True, text=True)
    check("unknown label exit 2", p.returncode == 2, p.stderr)
    check("unknown label message", "job 'a': no executor for runs-on [\"nowhere\"]" in p.stderr,
          p.stderr)

    # Ctrl-C: the running step stops, always() steps run, the job is cancelled.
    with open(path, "w") as f:
        f.write(r"""
on: push
jobs:
  c:
    runs-on: local
    steps:
      - run: echo started; sleep 60
      - run: echo not-this
      - run: echo "cleanup ${{ job.status }}"
        if: always()
""")
    proc = subprocess.Popen([RUNNERCTL, "exec", "-l", "local=host", "-C", tmp, path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if "| started" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, errs = proc.communicate(timeout=60)
    seen += rest
    c = lines(seen, "c")
    check("cancel: running step stopped", "  error: The step was cancelled." in c, seen + errs)
    check("cancel: later step skipped", "  | not-this" not in c)
    check("cancel: always() step ran", "  | cleanup cancelled" in c, seen)
    check("cancel: job cancelled", "  job cancelled" in " ".join(c) or
          any(l.startswith("job cancelled") for l in c), seen)
    check("cancel: exit 1", proc.returncode == 1, str(proc.returncode))

# github.workspace in job outputs (evaluated after the steps): on the host it is the run's
# directory, the one the steps see as GITHUB_WORKSPACE.
with tempfile.TemporaryDirectory() as tmp:
    rc, out, err, rep = run(tmp, r"""
on: push
jobs:
  w:
    runs-on: local
    outputs:
      dir: ${{ github.workspace }}/out
    steps:
      - run: echo "ws=$GITHUB_WORKSPACE"
""")
    ws = [l[len("  | ws="):] for l in lines(out, "w") if l.startswith("  | ws=")]
    jobs = {j["id"]: j for j in rep["jobs"]} if rep else {}
    got = jobs.get("w", {}).get("outputs", {}).get("dir")
    check("github.workspace in job outputs (host)",
          rc == 0 and len(ws) == 1 and ws[0].startswith("/") and got == ws[0] + "/out",
          "%r %r %s" % (ws, got, out + err))

print("%d failed" % T.failures if T.failures else "exec-host: all checks passed")
sys.exit(1 if T.failures else 0)
