#!/usr/bin/env python3
"""Self-test of gitea_double.py: starts it (1.24 and 1.20 modes) and checks every procedure and fault."""
import base64
import gzip
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
passed = failed = 0


def check(name, cond, info=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (name, info))


def start(version):
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "gitea_double.py"), "--port", "0",
                          "--port-file", pf, "--gitea-version", version], stdout=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(pf):
            port = open(pf).read().strip()
            shutil.rmtree(d, ignore_errors=True)
            return p, "http://127.0.0.1:%s" % port
        time.sleep(0.05)
    p.kill()
    raise SystemExit("double did not start")


def call(base, path, body, headers=None, ctype="application/json", raw=None, timeout=10):
    data = raw if raw is not None else json.dumps(body).encode()
    h = {"Content-Type": ctype, "Connect-Protocol-Version": "1"}
    h.update(headers or {})
    req = urllib.request.Request(base + path, data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            b = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                b = gzip.decompress(b)
            return r.status, r.headers.get("Content-Type"), b
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def rpc(base, proc, body, auth=None, **kw):
    path = "/api/actions/ping.v1.PingService/Ping" if proc == "Ping" else "/api/actions/runner.v1.RunnerService/" + proc
    h = {"x-runner-uuid": auth[0], "x-runner-token": auth[1]} if auth else None
    st, ct, b = call(base, path, body, h, **kw)
    try:
        j = json.loads(b) if b else None
    except ValueError:
        j = None
    return st, j, ct, b


def admin(base, what, body=None):
    st, ct, b = call(base, "/_admin/" + what, body or {})
    return json.loads(b)


UNREG = "rpc error: code = Unauthenticated desc = unregistered runner"


def test_124(base):
    st, j, ct, _ = rpc(base, "Ping", {"data": "r1"})
    check("ping", st == 200 and j == {"data": "Hello, r1!"} and ct.startswith("application/json"), j)
    # protocol-level errors
    st, _, ct, b = rpc(base, "Nope", {})
    check("unknown path 404 text", st == 404 and ct.startswith("text/plain"), (st, ct))
    st, _, _, _ = rpc(base, "Ping", {}, ctype="text/plain")
    check("wrong ctype 415", st == 415, st)
    st, j, _, _ = rpc(base, "Ping", None, raw=b"")
    check("empty body 400", st == 400 and j["code"] == "invalid_argument", j)
    st, j, _, _ = rpc(base, "Ping", None, raw=b"{bad")
    check("bad json 400", st == 400 and j["code"] == "invalid_argument", j)
    # tokens and Register
    t1 = admin(base, "token")["token"]
    st, j, _, _ = rpc(base, "Register", {"name": "", "token": t1})
    check("register missing name", st == 500 and j == {"code": "unknown", "message": "missing runner token, name"}, j)
    st, j, _, _ = rpc(base, "Register", {"name": "x", "token": "nope"})
    check("register bad token", st == 500 and j["message"] == "runner registration token not found", j)
    st, j, _, _ = rpc(base, "Register", {"name": "r1", "token": t1, "version": "v1", "labels": ["ubuntu-latest", "linux"],
                                         "agentLabels": ["ignored"]})
    r = j["runner"]
    check("register ok", st == 200 and len(r["token"]) == 40 and len(r["uuid"]) == 36 and r["id"] == "1"
          and r["labels"] == ["ubuntu-latest", "linux"] and "ephemeral" not in r, j)
    auth = (r["uuid"], r["token"])
    st, j, _, _ = rpc(base, "Register", {"name": "r1b", "token": t1})
    check("token reusable", st == 200, j)
    t2 = admin(base, "token")["token"]
    st, j, _, _ = rpc(base, "Register", {"name": "x", "token": t1})
    check("old token invalidated", st == 500 and "invalidated" in j["message"], j)
    # Declare
    st, j, _, _ = rpc(base, "Declare", {"version": "v2", "labels": ["ubuntu-latest", "linux", "gpu"]}, auth)
    check("declare", st == 200 and j["runner"]["labels"][-1] == "gpu" and j["runner"]["version"] == "v2"
          and "token" not in j["runner"], j)
    st, j, _, _ = rpc(base, "Declare", {}, (auth[0], "0" * 40))
    check("declare wrong token", st == 500 and j == {"code": "unknown", "message": UNREG}, j)
    # FetchTask / tasksVersion
    st, j, _, _ = rpc(base, "FetchTask", {"tasksVersion": "0"}, auth)
    check("fetch empty", st == 200 and "task" not in j and int(j["tasksVersion"]) > 0, j)
    v = j["tasksVersion"]
    st, j, _, _ = rpc(base, "FetchTask", {"tasks_version": int(v)}, auth)
    check("fetch same version", j == {"tasksVersion": v}, j)
    admin(base, "enqueue", {"runsOn": ["windows"]})
    q = admin(base, "enqueue", {"runsOn": ["ubuntu-latest"], "steps": [{"name": "a", "run": "echo a"}, {"name": "b", "run": "echo b"}],
                                "secrets": {"DEPLOY_KEY": "s3cr3t"}, "vars": {"REGISTRY": "reg"},
                                "needs": {"lint": {"outputs": {"ok": "yes"}, "result": "RESULT_SUCCESS"}},
                                "outputs": {"artifact": "${{ steps.b.outputs.artifact }}"}})
    admin(base, "enqueue", {"runsOn": ["linux"]})
    st, j, _, _ = rpc(base, "FetchTask", {"tasksVersion": v}, auth)
    check("tasksVersion bumped", int(j["tasksVersion"]) > int(v), j)
    task = j.get("task", {})
    payload = base64.b64decode(task.get("workflowPayload", "")).decode()
    check("one task, label match", task.get("id") == "1" and "runs-on: \"ubuntu-latest\"" in payload, payload)
    check("task fields", task["secrets"]["DEPLOY_KEY"] == "s3cr3t" and task["secrets"]["GITEA_TOKEN"] == task["context"]["token"]
          and task["vars"] == {"REGISTRY": "reg"} and task["needs"]["lint"]["result"] == "RESULT_SUCCESS"
          and task["context"]["job"] == "build" and task["context"]["ref_protected"] is False, task)
    tid = task["id"]
    # UpdateLog
    rows = lambda a, b: [{"time": "2025-06-01T12:00:00.120Z", "content": "row %d" % i} for i in range(a, b)]
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "0", "rows": rows(0, 3)}, auth)
    check("log first", j == {"ackIndex": "3"}, j)
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "2", "rows": rows(2, 5)}, auth)
    check("log overlap", j == {"ackIndex": "5"}, j)
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "9", "rows": rows(9, 10), "noMore": True}, auth)
    check("log gap no-op", j == {"ackIndex": "5"}, j)
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "0", "rows": [], "noMore": True}, auth)
    check("log empty noMore ignored", j == {"ackIndex": "5"}, j)
    # UpdateTask running
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": tid, "startedAt": "2025-06-01T12:00:00Z",
                                                    "steps": [{"id": "0", "startedAt": "2025-06-01T12:00:03Z", "logIndex": "3", "logLength": "2"}]}}, auth)
    check("update running", j == {"state": {"id": tid}}, j)
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": tid}, "outputs": {"artifact": "app.tgz"}}, auth)
    check("outputs acked", j == {"state": {"id": tid}, "sentOutputs": ["artifact"]}, j)
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": tid}, "outputs": {"artifact": "other"}}, auth)
    s = admin(base, "state")
    check("outputs first wins", s["tasks"][0]["outputs"] == {"artifact": "app.tgz"}, s["tasks"][0]["outputs"])
    check("step stored", s["tasks"][0]["steps"][0]["status"] == "running" and s["tasks"][0]["steps"][0]["logLength"] == 2, s["tasks"][0]["steps"])
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": "999"}}, auth)
    check("update missing task", st == 500 and "resource does not exist" in j["message"], j)
    # final log + archive
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "5", "rows": rows(5, 6), "noMore": True}, auth)
    check("log noMore", j == {"ackIndex": "6"}, j)
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "6", "rows": rows(6, 7)}, auth)
    check("archived", st == 500 and j["message"] == "rpc error: code = AlreadyExists desc = log file has been archived", j)
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid, "index": "0", "rows": rows(0, 2)}, auth)
    check("dup after archive ok", j == {"ackIndex": "6"}, j)
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": tid, "result": "RESULT_SUCCESS", "stoppedAt": "2025-06-01T12:01:00Z"}}, auth)
    check("final", j == {"state": {"id": tid, "result": "RESULT_SUCCESS"}, "sentOutputs": ["artifact"]}, j)
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": tid, "result": 2, "stoppedAt": "2025-06-01T12:01:00Z"}}, auth)
    check("final immutable", j["state"]["result"] == "RESULT_SUCCESS", j)
    s = admin(base, "state")
    check("state log rows", [x["content"] for x in s["tasks"][0]["logRows"]] == ["row %d" % i for i in range(6)]
          and s["tasks"][0]["archived"] and s["tasks"][0]["status"] == "success", s["tasks"][0])
    # second task (one per fetch) and cancellation
    st, j, _, _ = rpc(base, "FetchTask", {"tasksVersion": "0"}, auth)
    t2id = j["task"]["id"]
    st, j2, _, _ = rpc(base, "FetchTask", {"tasksVersion": "0"}, auth)
    check("queue drained (windows job not matched)", "task" not in j2, j2)
    admin(base, "cancel", {"taskId": t2id})
    st, j, _, _ = rpc(base, "UpdateTask", {"state": {"id": t2id}}, auth)
    check("cancel visible", j == {"state": {"id": t2id, "result": "RESULT_CANCELLED"}}, j)
    # gzip
    st, ct, b = call(base, "/api/actions/ping.v1.PingService/Ping", {"data": "z"}, {"Accept-Encoding": "gzip"})
    check("gzip ping", json.loads(b) == {"data": "Hello, z!"}, b)
    # faults
    admin(base, "fault", {"procedure": "FetchTask", "kind": "status", "status": 500, "count": 1})
    st, j, _, _ = rpc(base, "FetchTask", {}, auth)
    check("fault 500", st == 500 and j["code"] == "unknown", (st, j))
    admin(base, "fault", {"procedure": "UpdateLog", "kind": "status", "status": 503})
    st, j, _, _ = rpc(base, "UpdateLog", {"taskId": tid}, auth)
    check("fault 503", st == 503 and j["code"] == "unavailable", (st, j))
    admin(base, "fault", {"procedure": "Ping", "kind": "delay", "delayMs": 400})
    t0 = time.time()
    st, j, _, _ = rpc(base, "Ping", {"data": "d"})
    check("fault delay", st == 200 and time.time() - t0 >= 0.39, time.time() - t0)
    admin(base, "fault", {"procedure": "UpdateTask", "kind": "drop"})
    try:
        rpc(base, "UpdateTask", {"state": {"id": tid}}, auth)
        check("fault drop", False, "got a reply")
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError):
        check("fault drop", True)
    st, j, _, _ = rpc(base, "FetchTask", {}, auth)
    check("after drop ok", st == 200, j)
    admin(base, "fault", {"procedure": "Declare", "kind": "unauthenticated"})
    st, j, _, _ = rpc(base, "Declare", {}, auth)
    check("fault unauthenticated", st == 500 and j["message"] == UNREG, j)
    admin(base, "forget", {"uuid": auth[0]})
    st, j, _, _ = rpc(base, "FetchTask", {}, auth)
    check("forgotten runner", st == 500 and j["message"] == UNREG, j)
    # ephemeral + zombie via clock
    r = rpc(base, "Register", {"name": "eph", "token": t2, "labels": ["e"], "ephemeral": True})[1]["runner"]
    check("ephemeral echoed", r.get("ephemeral") is True, r)
    ea = (r["uuid"], r["token"])
    admin(base, "enqueue", {"runsOn": ["e"]})
    admin(base, "enqueue", {"runsOn": ["e"]})
    et = rpc(base, "FetchTask", {}, ea)[1]["task"]["id"]
    st, j, _, _ = rpc(base, "FetchTask", {}, ea)
    check("ephemeral one task", "task" not in j, j)
    admin(base, "clock", {"advanceSeconds": 601})
    s = admin(base, "state")
    zt = [t for t in s["tasks"] if t["id"] == int(et)][0]
    check("zombie failed", zt["status"] == "failure" and zt["archived"], zt)
    st, j, _, _ = rpc(base, "FetchTask", {}, ea)
    check("ephemeral deleted", st == 500 and j["message"] == UNREG, j)
    check("calls counted", all(s["calls"].get(p, 0) > 0 for p in ("Ping", "Register", "Declare", "FetchTask", "UpdateTask", "UpdateLog")), s["calls"])


def test_120(base):
    st, _, _, _ = rpc(base, "Declare", {}, ("x", "y"))
    check("1.20 declare 404", st == 404, st)
    t = admin(base, "token")["token"]
    st, j, _, _ = rpc(base, "Register", {"name": "old", "token": t, "agentLabels": ["linux"], "customLabels": ["c"]})
    r = j["runner"]
    check("1.20 register", st == 200 and r["agentLabels"] == ["linux"] and "labels" not in r, j)
    st, j, _, _ = rpc(base, "Register", {"name": "old2", "token": t})
    check("1.20 single-use token", st == 500 and j["message"] == "runner token has already been activated", j)
    admin(base, "enqueue", {"runsOn": ["linux", "c"]})
    st, j, _, _ = rpc(base, "FetchTask", {}, (r["uuid"], r["token"]))
    check("1.20 fetch no tasksVersion", "tasksVersion" not in j and "task" in j and j["task"]["context"]["job"].isdigit(), j)


def main():
    for version, fn in (("1.24", test_124), ("1.20", test_120)):
        p, base = start(version)
        try:
            fn(base)
        except Exception as e:
            import traceback
            traceback.print_exc()
            check("%s exception" % version, False, repr(e))
        finally:
            p.terminate()
            try:
                rc = p.wait(10)
                check("%s clean shutdown" % version, rc == 0, rc)
            except subprocess.TimeoutExpired:
                p.kill()
                check("%s clean shutdown" % version, False, "timeout")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
