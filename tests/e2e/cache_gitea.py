#!/usr/bin/env python3
"""actions/cache as a user of a real Gitea sees it (README.md, "Cache"; doc/cache.md): Gitea
1.25 started throwaway on loopback from the shared test tools ($RUNNERD_SHARED_DIR, else
$SRCDIR/../shared: gitea/start.sh; without them the suite prints why and exits 0 as skipped),
the real `runnerctl register` and `runnerd`, and the node test image (tests/images/build.sh
node) mapped to the runner's label. The repository holds its workflow and the cache client
(tests/e2e/cache_client.js, the toolkit's requests); every check reads Gitea's stored job log
(GET /repos/OWNER/NAME/actions/jobs/ID/logs), what the user sees.

  first push       restore of deps-v1 misses, the job makes the data and saves it;
                   ACTIONS_RUNTIME_TOKEN is Gitea's own JWT (its claims name the run and job
                   Gitea lists), not the cache token, which rides in ACTIONS_CACHE_URL and is
                   *** wherever the job prints it
  another repo     the same workflow in a second repository misses deps-v1
  branch           a push to another branch of the repository restores deps-v1 (the default
                   branch's entry: the same MD5) and saves nothing
  fork PR          a pull request from a fork (an organisation's fork) reads what the default
                   branch saved (a hit) and saves poison-v1 under its own ref
  second push      the default branch restores deps-v1 (a hit, the same MD5 as the first run
                   made) and does not see the pull request's poison-v1 (a miss)

Environment: RUNNERCTL, RUNNERD, SRCDIR, RUNNERD_SHARED_DIR."""
import base64
import json
import os
import re
import sys
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as base  # noqa: E402
from gitea import GiteaRunner, stored_lines, suite as gitea_suite  # noqa: E402

check, wait_until = base.check, base.wait_until
LABEL = "e2e-node"

WORKFLOW = r"""on: [push, pull_request]
jobs:
  cache:
    runs-on: %s
    steps:
      - uses: actions/checkout@v4
      - name: tokens
        run: |
          tok=${ACTIONS_CACHE_URL%%/}; tok=${tok##*/}
          echo "cache-url=$ACTIONS_CACHE_URL"
          echo "cache-token=$tok"
          echo "cache-claims=${tok%%%%.*}"
          echo "runtime-claims=$(echo "$ACTIONS_RUNTIME_TOKEN" | cut -d. -f2)"
          echo "runtime-token-whole=$ACTIONS_RUNTIME_TOKEN"
          if [ -n "$ACTIONS_RUNTIME_TOKEN" ] && [ "$ACTIONS_RUNTIME_TOKEN" != "$tok" ]; then
            echo "runtime-token=distinct"
          else
            echo "runtime-token=same"
          fi
      - id: restore
        run: |
          rc=0; out=$(node cache_client.js restore deps-v1 deps) || rc=$?
          echo "deps: $out"
          case "$out" in *"cache hit"*) echo "hit=true" >> "$GITHUB_OUTPUT";; esac
          exit $rc
      - run: |
          if [ -f deps/data.bin ]; then
            echo "restored $(md5sum deps/data.bin | cut -c1-32)"
          else
            mkdir -p deps && head -c 2000000 /dev/urandom > deps/data.bin
            echo "made $(md5sum deps/data.bin | cut -c1-32)"
          fi
      - if: steps.restore.outputs.hit != 'true'
        run: node cache_client.js save deps-v1 deps
      - name: poison
        run: |
          rc=0; out=$(node cache_client.js restore poison-v1 poison) || rc=$?
          echo "poison: $out"
          [ $rc = 0 ] || exit $rc
          if [ -f poison/p.txt ]; then echo "poison-restored $(cat poison/p.txt)"; fi
          if [ "$GITHUB_EVENT_NAME" = pull_request ] && [ ! -f poison/p.txt ]; then
            mkdir -p poison && echo from-the-pr > poison/p.txt
            node cache_client.js save poison-v1 poison
          fi
""" % LABEL


class Runner(GiteaRunner):
    """One runnerd registered with the real Gitea under LABEL, mapped to the node test image."""

    def __init__(self, g, tmp, image):
        super().__init__(g, tmp, "  labels:\n    %s:\n      image: %s\n" % (LABEL, image),
                         (("e2e-cache", LABEL, False),))


def b64json(part):
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:
        return None


def field(lines, name):
    """The value of the first "NAME=VALUE" (or "NAME VALUE") line of a stored log, or None."""
    for x in lines:
        m = re.match(r"%s[= ](.*)$" % re.escape(name), x)
        if m:
            return m.group(1)
    return None


def new_run(g, repo, seen, event, branch=None, timeout=60):
    """The first run of repo not in seen (ids) for that event (and branch), once Gitea lists it."""
    def find():
        for run in g.runs(repo):
            if run["id"] not in seen and run.get("event") == event and \
                    (branch is None or run.get("head_branch") == branch):
                return run
        return None
    return wait_until(find, timeout, "a new %s run of %s" % (event, repo))


def finished(g, repo, run, timeout=120):
    """(the job, Gitea's stored log of it as lines), once the run's one job completed."""
    jobs = g.all_jobs_done(repo, run["id"], timeout)
    if not jobs:
        return None, []
    text = wait_until(lambda: (lambda t: t if "Job succeeded" in t or "Job failed" in t else None)(
        g.job_log(repo, jobs[0]["id"])), 30, "the job's log in Gitea")
    return jobs[0], stored_lines(text or "")


def commit_file(g, owner, repo, path, text, branch=None, new_branch=None):
    body = {"content": base64.b64encode(text.encode()).decode(), "message": "add " + path}
    if branch:
        body["branch"] = branch
    if new_branch:
        body["new_branch"] = new_branch
    g.api("POST", "/repos/%s/%s/contents/%s" % (owner, repo, path), body)


def check_tokens(what, lines, run, job):
    """The job's ACTIONS_RUNTIME_TOKEN is Gitea's (a JWT naming this run and job) and not the
    cache token; the cache token is *** wherever the job printed it."""
    claims = field(lines, "cache-claims")
    c = b64json(claims) if claims and claims != "***" else None
    check(c and c.get("repo") and c.get("ref"),
          "%s: the cache token in ACTIONS_CACHE_URL is runnerd's (claims %s)" % (what, c))
    check(field(lines, "cache-token") == "***" and "/***/" in (field(lines, "cache-url") or ""),
          "%s: the cache token is *** in Gitea's log: %s / %s"
          % (what, field(lines, "cache-token"), field(lines, "cache-url")))
    check(claims and not any(claims + "." in x for x in lines),
          "%s: the whole cache token is nowhere in Gitea's log" % what)
    check(field(lines, "runtime-token") == "distinct",
          "%s: ACTIONS_RUNTIME_TOKEN is not the cache token: %s"
          % (what, field(lines, "runtime-token")))
    rclaims = field(lines, "runtime-claims") or ""
    check(field(lines, "runtime-token-whole") == "***" and rclaims
          and not any(rclaims + "." in x for x in lines),
          "%s: ACTIONS_RUNTIME_TOKEN is *** in Gitea's log, and whole nowhere: %s"
          % (what, field(lines, "runtime-token-whole")))
    rc = b64json(rclaims)
    check(rc and rc.get("RunID") == run["id"] and rc.get("JobID") == job["id"],
          "%s: ACTIONS_RUNTIME_TOKEN is Gitea's own (its claims name run %s, job %s): %s"
          % (what, run["id"], job["id"], rc))
    return c


def scenario(g, r, client):
    t0 = time.monotonic()
    g.api("POST", "/user/repos", {"name": "cached", "auto_init": True, "default_branch": "main"})
    files = [{"operation": "create", "path": p, "content": base64.b64encode(t.encode()).decode()}
             for p, t in ((".gitea/workflows/ci.yml", WORKFLOW), ("cache_client.js", client))]
    g.api("POST", "/repos/ci/cached/contents", {"files": files, "message": "workflow + client"})

    # 1. The first push: a miss, the data made and saved.
    run1 = new_run(g, "cached", set(), "push")
    if not run1:
        return
    job, log = finished(g, "cached", run1)
    check(job and job["conclusion"] == "success", "first push: the job succeeds: %s" % log[-30:])
    check("deps: cache miss" in log,
          "first push: deps-v1 misses: %s" % [x for x in log if "deps:" in x])
    made = field(log, "made")
    check(made and re.match(r"[0-9a-f]{32}$", made), "first push: the data is made: %s" % made)
    check(any(x.startswith("cache saved deps-v1 (") for x in log), "first push: deps-v1 is saved")
    c = check_tokens("first push", log, run1, job) if job else None
    check(c and c.get("repo") == "ci/cached" and c.get("ref") == "refs/heads/main"
          and c.get("default_ref") == "refs/heads/main",
          "first push: the cache token names ci/cached, refs/heads/main: %s" % c)
    print("  first push done at %.1fs" % (time.monotonic() - t0), flush=True)

    # 2. Meanwhile: another repository with the same workflow, and a pull request from a fork.
    g.api("POST", "/user/repos", {"name": "other", "auto_init": True, "default_branch": "main"})
    g.api("POST", "/repos/ci/other/contents", {"files": files, "message": "workflow + client"})
    g.api("POST", "/orgs", {"username": "forks"})
    g.api("POST", "/repos/ci/cached/forks", {"organization": "forks"})
    def forked():
        try:
            return g.api("GET", "/repos/forks/cached/branches/main")
        except urllib.error.HTTPError:
            return None
    wait_until(forked, 30, "the fork's main branch")
    commit_file(g, "forks", "cached", "pr.txt", "from a fork\n", branch="main", new_branch="pr")
    pr = g.api("POST", "/repos/ci/cached/pulls",
               {"head": "forks:pr", "base": "main", "title": "pr"})
    check(pr and pr.get("head", {}).get("repo", {}).get("full_name") == "forks/cached",
          "fork PR: the pull request's head is the fork: %s" % (pr or {}).get("head"))

    commit_file(g, "ci", "cached", "feature.txt", "a branch\n", branch="main", new_branch="feature")

    orun = new_run(g, "other", set(), "push")
    prrun = new_run(g, "cached", {run1["id"]}, "pull_request")
    if orun:
        ojob, olog = finished(g, "other", orun)
        check(ojob and ojob["conclusion"] == "success",
              "another repo: the job succeeds: %s" % olog[-30:])
        check("deps: cache miss" in olog and not any(x.startswith("restored ") for x in olog),
              "another repo: deps-v1 misses: %s" % [x for x in olog if "deps:" in x])
    if prrun:
        pjob, plog = finished(g, "cached", prrun)
        check(pjob and pjob["conclusion"] == "success",
              "fork PR: the job succeeds: %s" % plog[-30:])
        pc = check_tokens("fork PR", plog, prrun, pjob) if pjob else None
        check(pc and pc.get("repo") == "ci/cached"
              and (pc.get("ref") or "").startswith("refs/pull/")
              and pc.get("default_ref") == "refs/heads/main",
              "fork PR: the cache token names the base repository and the PR's ref: %s" % pc)
        check("deps: cache hit deps-v1" in plog and field(plog, "restored") == made,
              "fork PR: reads what the default branch saved: %s"
              % [x for x in plog if "deps:" in x])
        check("poison: cache miss" in plog
              and any(x.startswith("cache saved poison-v1 (") for x in plog),
              "fork PR: saves poison-v1 under its own ref: %s" % [x for x in plog if "poison" in x])
    frun = new_run(g, "cached", {run1["id"]}, "push", branch="feature")
    if frun:
        fjob, flog = finished(g, "cached", frun)
        check(fjob and fjob["conclusion"] == "success", "branch: the job succeeds: %s" % flog[-30:])
        fc = check_tokens("branch", flog, frun, fjob) if fjob else None
        check(fc and fc.get("ref") == "refs/heads/feature"
              and fc.get("default_ref") == "refs/heads/main",
              "branch: the cache token names refs/heads/feature and the default branch: %s" % fc)
        check("deps: cache hit deps-v1" in flog and field(flog, "restored") == made and
              not any(x.startswith("cache saved deps-v1") for x in flog),
              "branch: a push to another branch restores the default branch's entry: %s"
              % [x for x in flog if "deps:" in x or "restored" in x])
    print("  another repo, branch and fork PR done at %.1fs" % (time.monotonic() - t0), flush=True)

    # 3. The default branch again: deps-v1 restored byte for byte, the PR's entry unseen.
    seen = set(x["id"] for x in g.runs("cached"))
    commit_file(g, "ci", "cached", "again.txt", "second push\n")
    run2 = new_run(g, "cached", seen, "push")
    if not run2:
        return
    job, log = finished(g, "cached", run2)
    check(job and job["conclusion"] == "success", "second push: the job succeeds: %s" % log[-30:])
    check("deps: cache hit deps-v1" in log,
          "second push: deps-v1 hits: %s" % [x for x in log if "deps:" in x])
    check(made and field(log, "restored") == made,
          "second push: the restored bytes' MD5 is what the first push made (%s vs %s)"
          % (field(log, "restored"), made))
    check(not any(x.startswith("cache saved") for x in log), "second push: nothing saved again")
    check("poison: cache miss" in log and field(log, "poison-restored") is None,
          "second push: the fork PR's poison-v1 is not restored on the default branch: %s"
          % [x for x in log if "poison" in x])
    if job:
        check_tokens("second push", log, run2, job)
    print("  second push done at %.1fs" % (time.monotonic() - t0), flush=True)


def leftovers(r, tmp):
    """Nothing of runnerd's is left once it stopped; whatever a failure left is removed."""
    if r:
        base.check_no_leftovers(r, "after the suite")
    base.remove_leftovers(tmp)


def main():
    with open(os.path.join(base.SRC, "tests", "e2e", "cache_client.js")) as f:
        client = f.read()
    return gitea_suite("runnerd-e2e-cache-gitea-", "node", Runner,
                       [("cache", lambda g, r, tmp: scenario(g, r, client))], leftovers)


if __name__ == "__main__":
    sys.exit(main())
