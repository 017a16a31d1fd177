#!/usr/bin/env python3
"""runnerctl status, tasks and logs against a state database built without runnerd: a missing
database is reported and not created; runnerctl itself lays the schema down in an empty file
(store_open migrates it), then python's sqlite3 fills in rows through that very schema, so any
drift between this test and daemon/state/store.c fails loudly on the INSERTs. Checks: identities shown
and the token never printed (nor task secrets); counts and running tasks; tasks newest first
with results, -n, --only and column alignment; --json documents; logs in order, -t; unknown
task (exit 1); bad usage (exit 2); a newer schema and a non-database file refused."""
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image)

RUNNERCTL = os.environ["RUNNERCTL"]
T = lib.Tally()
check = T.check

TOKEN = "tok-SECRET-4f9a1c"
TASK_SECRET = "hunter2-task-secret"


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("RUNNERD_STATE", None)
    e.update(env or {})
    p = subprocess.run([RUNNERCTL, *args], capture_output=True, text=True, timeout=60, env=e)
    return p.returncode, p.stdout, p.stderr


def fill(db, now_ns):
    """Writes identities, tasks and log rows through the schema runnerctl created."""
    sec = 1_000_000_000
    con = sqlite3.connect(db)
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        raise SystemExit("FAIL schema: user_version is %d after runnerctl opened the file" % version)
    con.execute("INSERT INTO identities (cls, id, uuid, token, name, instance, labels, ephemeral, "
                "registered_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("cpu", 7, "0d3f5c2a-1111-2222-3333-444455556666", TOKEN, "host-1",
                 "https://git.example.com/",
                 json.dumps(["ubuntu-latest:docker://node:20", "linux:host"],
                            separators=(",", ":")), 0, now_ns - 86400 * sec))
    payload = json.dumps({"id": 0, "secrets": {"TOKEN": TASK_SECRET}})
    tasks = [
        # id, state, result, job, repo, started, stopped, log_rows, log_acked, reason
        (100, "done", 4, "lint", "owner/app", now_ns - 900 * sec, now_ns - 899 * sec, 0, 0, None),
        (101, "done", 1, "build", "owner/app", now_ns - 600 * sec, now_ns - 475 * sec, 3, 3, None),
        (102, "done", 2, "test", "owner/lib", now_ns - 400 * sec, now_ns - 390 * sec, 0, 0,
         "the agent died"),
        (103, "finishing", 3, "deploy", "owner/app", now_ns - 300 * sec, now_ns - 200 * sec, 2, 1,
         None),
        (104, "running", 0, "build (linux)", "owner/lib", now_ns - 65 * sec, 0, 3, 1, None),
        (105, "running", 0, "docs", "owner/app", 0, 0, 0, 0, None),
    ]
    for (tid, state, result, job, repo, started, stopped, rows, acked, reason) in tasks:
        con.execute("INSERT INTO tasks (id, ident, state, result, task, job, repo, created_ns, "
                    "started_ns, stopped_ns, log_rows, log_acked, log_closed, final_sent, steps, "
                    "outputs, sent_outputs, checkpoint, exec, reason) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (tid, "cpu", state, result, payload, job, repo, started or now_ns, started,
                     stopped, rows, acked, int(state == "done"), int(state == "done"), "[]", None,
                     None, None, None, reason))
    # Inserted out of order: logs must print by index.
    for (tid, idx, t, content) in [(104, 2, now_ns - 10 * sec, "third line"),
                                   (104, 0, 1714557600123000000, "first line"),
                                   (104, 1, now_ns - 20 * sec, "second\tline"),
                                   (101, 0, now_ns, "b0"), (101, 1, now_ns, "b1"),
                                   (101, 2, now_ns, "b2")]:
        con.execute("INSERT INTO log_rows (task_id, idx, time_ns, content) VALUES (?, ?, ?, ?)",
                    (tid, idx, t, content))
    con.commit()
    con.close()
    return version


def main():
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "state", "runnerd.db")

        # A missing database: reported, exit 1, and not created.
        for cmd in (["status"], ["tasks"], ["logs", "1"]):
            rc, out, err = run(*cmd, "--state", db)
            check("missing db: %s exits 1" % cmd[0], rc == 1, "rc=%d" % rc)
            check("missing db: %s says so" % cmd[0],
                  ("runnerctl: %s: no state database (register first: runnerctl register" % db)
                  in err, err)
        check("missing db: not created", not os.path.exists(db) and
              not os.path.exists(os.path.dirname(db)))
        rc, out, err = run("status", env={"RUNNERD_STATE": db + ".env"})
        check("RUNNERD_STATE names the database",
              rc == 1 and ("%s.env: no state database" % db) in err, err)

        # An empty file becomes an empty runnerd database.
        os.makedirs(os.path.dirname(db), mode=0o700)
        open(db, "w").close()
        rc, out, err = run("status", "--state", db)
        check("empty db: status exits 0", rc == 0, "rc=%d %s" % (rc, err))
        check("empty db: no runners", "runners: none" in out, out)
        check("empty db: no tasks", "tasks: 0 running, 0 finishing" in out, out)
        rc, out, err = run("tasks", "--state", db)
        check("empty db: tasks says none", rc == 0 and "no tasks in " + db in out, out + err)

        now_ns = time.time_ns()
        fill(db, now_ns)
        alltext = ""

        # status
        rc, out, err = run("status", "--state", db, env={"RUNNERD_STATE": "/nonexistent/x.db"})
        alltext += out + err
        check("status exits 0 (--state beats RUNNERD_STATE)", rc == 0, "rc=%d %s" % (rc, err))
        for s in ("host-1", "0d3f5c2a-1111-2222-3333-444455556666", "https://git.example.com/",
                  "ubuntu-latest:docker://node:20,linux:host", "tasks: 2 running, 1 finishing"):
            check("status shows " + s, s in out, out)
        check("status never prints the token", TOKEN not in out + err)
        task_lines = [l.split() for l in out.splitlines() if re.match(r"^\s+\d+\s", l)]
        ids = [l[0] for l in task_lines]
        check("status lists the active tasks", sorted(ids) == ["103", "104", "105"], out)
        row104 = next((l for l in out.splitlines() if l.strip().startswith("104 ")), "")
        check("status: running task with duration",
              re.search(r"build \(linux\)\s+owner/lib\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+1m0[5-9]s",
                        row104) is not None, row104)

        rc, out, err = run("status", "--state", db, "--json")
        alltext += out + err
        check("status --json exits 0", rc == 0, err)
        try:
            doc = json.loads(out)
        except ValueError as ex:
            doc = {}
            check("status --json parses", False, "%s: %r" % (ex, out))
        idents = doc.get("identities", [])
        check("status --json identity", len(idents) == 1 and idents[0].get("cls") == "cpu" and
              idents[0].get("uuid") == "0d3f5c2a-1111-2222-3333-444455556666" and
              idents[0].get("labels") == ["ubuntu-latest:docker://node:20", "linux:host"] and
              idents[0].get("id") == 7, json.dumps(idents))
        check("status --json has no token", all("token" not in i for i in idents) and
              TOKEN not in out)
        check("status --json counts", doc.get("running") == 2 and doc.get("finishing") == 1,
              json.dumps(doc))
        check("status --json tasks",
              sorted(t["id"] for t in doc.get("tasks", [])) == [103, 104, 105], out)

        # tasks
        rc, out, err = run("tasks", "--state", db)
        alltext += out + err
        lines = out.splitlines()
        check("tasks exits 0", rc == 0, err)
        check("tasks header", lines and lines[0].split() ==
              ["ID", "STATE", "RESULT", "JOB", "REPO", "STARTED", "DURATION", "LOGS", "REASON"],
              out)
        rows = lines[1:]
        check("tasks newest first", [r.split()[0] for r in rows] ==
              ["105", "104", "103", "102", "101", "100"], out)
        results = {r.split()[0]: r.split()[2] for r in rows}
        check("tasks results", results == {"105": "-", "104": "-", "103": "cancelled",
                                           "102": "failure", "101": "success",
                                           "100": "skipped"}, str(results))
        check("tasks columns aligned",
              all(r.index(r.split()[1]) == lines[0].index("STATE") for r in rows) and
              all(r.find("owner/") == lines[0].index("REPO") for r in rows), out)
        r101 = next((r for r in rows if r.startswith("101 ")), "")
        check("tasks duration and logs", re.search(r"\b2m05s\s+3/3\s+-$", r101) is not None, r101)
        r102 = next((r for r in rows if r.startswith("102 ")), "")
        check("tasks reason", r102.endswith("the agent died"), r102)
        r105 = next((r for r in rows if r.startswith("105 ")), "")
        check("tasks unstarted task", re.search(r"docs\s+owner/app\s+-\s+-\s+0/0", r105)
              is not None, r105)

        rc, out, err = run("tasks", "--state", db, "-n", "2")
        check("tasks -n 2", rc == 0 and [l.split()[0] for l in out.splitlines()[1:]] ==
              ["105", "104"], out + err)
        rc, out, err = run("tasks", "--state", db, "--only", "done", "-n", "0")
        check("tasks --only done", rc == 0 and [l.split()[0] for l in out.splitlines()[1:]] ==
              ["102", "101", "100"], out + err)

        rc, out, err = run("tasks", "--state", db, "--json", "--limit", "10")
        alltext += out + err
        try:
            tasks = json.loads(out).get("tasks", [])
        except ValueError as ex:
            tasks = []
            check("tasks --json parses", False, "%s: %r" % (ex, out))
        check("tasks --json order", [t["id"] for t in tasks] == [105, 104, 103, 102, 101, 100],
              out)
        fields = {"id", "state", "result", "job", "repo", "started", "stopped", "duration_s",
                  "log_rows", "log_acked", "reason"}
        check("tasks --json fields", tasks and all(fields <= set(t) for t in tasks), out)
        t101 = next((t for t in tasks if t["id"] == 101), {})
        check("tasks --json values", t101.get("result") == "success" and
              t101.get("state") == "done" and t101.get("log_rows") == 3 and
              t101.get("log_acked") == 3 and abs(t101.get("duration_s", 0) - 125) < 0.01 and
              t101.get("job") == "build", json.dumps(t101))
        t102 = next((t for t in tasks if t["id"] == 102), {})
        check("tasks --json reason", t102.get("reason") == "the agent died" and
              t102.get("result") == "failure", json.dumps(t102))
        t105 = next((t for t in tasks if t["id"] == 105), {})
        check("tasks --json nulls", t105.get("result") is None and t105.get("started") is None and
              t105.get("duration_s") is None and t105.get("reason") is None, json.dumps(t105))
        check("no output carries task secrets or the token",
              TASK_SECRET not in alltext and TOKEN not in alltext)

        # logs
        rc, out, err = run("logs", "--state", db, "104")
        check("logs exits 0", rc == 0, err)
        check("logs in order", out == "first line\nsecond\tline\nthird line\n", repr(out))
        rc, out, err = run("logs", "-t", "104", "--state", db)
        lines = out.splitlines()
        check("logs -t", rc == 0 and len(lines) == 3 and
              lines[0] == "2024-05-01T10:00:00.123Z first line" and
              all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", l) for l in lines),
              repr(out))
        rc, out, err = run("logs", "--state", db, "105")
        check("logs of a task without rows", rc == 0 and out == "", repr(out) + err)
        rc, out, err = run("logs", "--state", db, "999")
        check("logs unknown task exits 1", rc == 1, "rc=%d" % rc)
        check("logs unknown task message", ("runnerctl: no task 999 in %s" % db) in err, err)

        # bad usage
        for args in (["status", "--bogus"], ["tasks", "--bogus"], ["logs", "--bogus", "1"],
                     ["tasks", "-n", "many"], ["tasks", "--only", "sleeping"], ["logs"],
                     ["logs", "x1"], ["status", "extra"], ["tasks", "--state"]):
            rc, out, err = run(*args, "--state", db) if args[-1] != "--state" else run(*args)
            check("usage error: %s exits 2" % " ".join(args), rc == 2, "rc=%d %s" % (rc, err))
            check("usage error: %s prints usage" % " ".join(args),
                  ("usage: runnerctl " + args[0]) in err, err)
        rc, out, err = run("status", "--bogus", "--state", db)
        check("unknown option named", "runnerctl status: unknown option --bogus" in err, err)

        # a newer schema, and a file that is no database at all
        newer = os.path.join(tmp, "newer.db")
        con = sqlite3.connect(newer)
        con.execute("PRAGMA user_version = 999")
        con.commit()
        con.close()
        rc, out, err = run("status", "--state", newer)
        check("newer schema refused", rc == 1 and
              ("%s: database schema version 999 is newer than this runnerd" % newer) in err, err)
        junk = os.path.join(tmp, "junk.db")
        with open(junk, "w") as f:
            f.write("certainly not sqlite\n" * 20)
        rc, out, err = run("tasks", "--state", junk)
        check("non-database refused", rc == 1 and
              ("%s: not a runnerd database" % junk) in err, err)

    print("%d failed" % T.failures)
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
