#!/usr/bin/env python3
"""gitea_double.py: a Gitea Actions server test double (runner.v1 / ping.v1, Connect unary JSON).

Python 3 standard library only. Listens on 127.0.0.1 only. See README.md next to this file.

    python3 gitea_double.py --port 0 --port-file PATH [--gitea-version 1.24]
"""
import argparse
import base64
import gzip
import hashlib
import hmac
import json
import os
import secrets as pysecrets
import signal
import socket
import sys
import threading
import time
import uuid as pyuuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 * 1024 * 1024          # request body cap
SOCKET_TIMEOUT = 30                  # seconds per socket read/write
MAX_DELAY_MS = 120_000               # cap on injected delays
MAX_LINE = 64 * 1024                 # Gitea MaxLineSize
MAX_OUTPUT_KEY = 255
MAX_OUTPUT_VALUE = 1024 * 1024

RESULTS = ["RESULT_UNSPECIFIED", "RESULT_SUCCESS", "RESULT_FAILURE", "RESULT_CANCELLED", "RESULT_SKIPPED"]
# internal status names; 1..4 coincide with Result numbers
STATUS = {0: "unknown", 1: "success", 2: "failure", 3: "cancelled", 4: "skipped",
          5: "waiting", 6: "running", 7: "blocked"}
FINAL = (1, 2, 3, 4)

RUNNER_SVC = "/api/actions/runner.v1.RunnerService/"
PING_PATH = "/api/actions/ping.v1.PingService/Ping"
PROCS = ("Register", "Declare", "FetchTask", "UpdateTask", "UpdateLog")

UNREG = "rpc error: code = Unauthenticated desc = unregistered runner"


class RPCError(Exception):
    def __init__(self, message, code="unknown", http=500):
        super().__init__(message)
        self.message, self.code, self.http = message, code, http


def vtuple(s):
    p = s.split(".")
    return (int(p[0]), int(p[1]) if len(p) > 1 else 0)


def ts_now(clock):
    return datetime.fromtimestamp(clock, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(v):
    """RFC 3339 string -> unix seconds (int), None if absent/invalid."""
    if not v or not isinstance(v, str):
        return None
    s = v.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # Python 3.11 fromisoformat handles fractional digits up to 6; cut longer fractions
    if "." in s:
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        s = head + "." + rest[:min(i, 6)].ljust(1, "0") + rest[i:]
    try:
        return int(datetime.fromisoformat(s).timestamp())
    except ValueError:
        return None


def fmt_ts(sec):
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def field(d, camel, snake=None, default=None):
    if not isinstance(d, dict):
        return default
    if camel in d and d[camel] is not None:
        return d[camel]
    if snake and snake in d and d[snake] is not None:
        return d[snake]
    return default


def to_int(v, what):
    if v is None:
        return 0
    if isinstance(v, bool):
        raise RPCError("invalid value for int64 field %s" % what, "invalid_argument", 400)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise RPCError("invalid value for int64 field %s: %r" % (what, v), "invalid_argument", 400)


def to_enum(v, what):
    if v is None:
        return 0
    if isinstance(v, str):
        if v in RESULTS:
            return RESULTS.index(v)
        raise RPCError("invalid value for enum field %s: %r" % (what, v), "invalid_argument", 400)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise RPCError("invalid value for enum field %s: %r" % (what, v), "invalid_argument", 400)


def str_list(v, what):
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RPCError("invalid value for repeated string field %s" % what, "invalid_argument", 400)
    return list(v)


def str_map(v, what):
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise RPCError("invalid value for map field %s" % what, "invalid_argument", 400)
    return dict(v)


def omit(d):
    """Drop ProtoJSON default values."""
    return {k: v for k, v in d.items() if v not in (None, "", 0, "0", False, [], {}, "RESULT_UNSPECIFIED")}


def yq(s):
    return json.dumps(s, ensure_ascii=False)


class Double:
    def __init__(self, version="1.24", app_url="http://127.0.0.1/"):
        self.version = version
        self.v = vtuple(version)
        self.lock = threading.RLock()
        self.clock_offset = 0.0
        self.app_url = app_url
        self.tokens = []          # dicts: token, owner, repo, active, created
        self.runners = {}         # uuid -> dict
        self.next_runner_id = 1
        self.jobs = []            # dicts
        self.next_job_id = 1
        self.next_run_id = 1
        self.tasks = {}           # id -> dict
        self.next_task_id = 1
        self.versions = {}        # (owner, repo) -> int
        self.faults = {}          # proc -> list of fault dicts
        self.outage_until = 0.0   # time.monotonic() until which every RPC is dropped
        self.calls = {}           # proc -> count
        self.events = []          # bounded log of calls

    # ---- clock ---------------------------------------------------------
    def now(self):
        return time.time() + self.clock_offset

    # ---- scope / versions ------------------------------------------------
    def bump(self, owner, repo):
        for key in [("", "")] + ([(owner, "")] if owner else []) + ([("", repo)] if repo else []):
            self.versions[key] = self.versions.get(key, 0) + 1

    def runner_scope(self, r):
        if r["repo"]:
            return ("", r["repo"])
        if r["owner"]:
            return (r["owner"], "")
        return ("", "")

    def job_in_scope(self, r, job):
        if r["repo"]:
            return job["repo"] == r["repo"]
        if r["owner"]:
            return job["repo"].split("/", 1)[0] == r["owner"]
        return True

    # ---- admin ---------------------------------------------------------
    def admin_token(self, body):
        owner = body.get("owner", "") or ""
        repo = body.get("repo", "") or ""
        if owner and repo:
            owner = ""
        tok = body.get("token") or "".join(pysecrets.choice(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40))
        with self.lock:
            if self.v >= (1, 21):
                for t in self.tokens:
                    if t["owner"] == owner and t["repo"] == repo:
                        t["active"] = False
                active = True
            else:
                active = False     # 1.19/1.20: is_active means "already used"
            self.tokens.append({"token": tok, "owner": owner, "repo": repo, "active": active})
        return {"token": tok, "owner": owner, "repo": repo}

    def admin_enqueue(self, body):
        with self.lock:
            jid = self.next_job_id
            self.next_job_id += 1
            run_id = body.get("runId") or self.next_run_id
            if not body.get("runId"):
                self.next_run_id += 1
            job_key = body.get("job", "build")
            runs_on = body.get("runsOn", ["ubuntu-latest"])
            if isinstance(runs_on, str):
                runs_on = [runs_on]
            steps = body.get("steps") or [{"name": "Step 1", "run": "echo hello"}]
            steps = [s if isinstance(s, dict) else {"name": str(s), "run": str(s)} for s in steps]
            repo = body.get("repo", "acme/app")
            payload = body.get("workflowPayload")
            if payload is None:
                payload = self.make_payload(body.get("workflowName", "CI"), job_key,
                                            body.get("name", job_key), runs_on, steps,
                                            body.get("outputs"))
            job = {
                "id": jid, "runId": run_id, "job": job_key, "name": body.get("name", job_key),
                "repo": repo, "runsOn": runs_on, "steps": steps, "payload": payload,
                "context": body.get("context") or {}, "secrets": body.get("secrets") or {},
                "vars": body.get("vars") or {}, "needs": body.get("needs") or {},
                "event": body.get("event") or {"ref": "refs/heads/main"},
                "status": "waiting", "taskId": 0, "attempt": 0, "updated": self.now(),
            }
            self.jobs.append(job)
            self.bump(repo.split("/", 1)[0], repo)
            return {"jobId": jid, "runId": run_id, "tasksVersion": self.versions.get(("", ""), 0)}

    @staticmethod
    def make_payload(wf_name, job_key, name, runs_on, steps, outputs):
        out = ["name: %s" % yq(wf_name), '"on":', "    push: {}", "jobs:", "    %s:" % yq(job_key),
               "        name: %s" % yq(name)]
        if len(runs_on) == 1:
            out.append("        runs-on: %s" % yq(runs_on[0]))
        else:
            out.append("        runs-on:")
            out += ["            - %s" % yq(x) for x in runs_on]
        out.append("        steps:")
        for s in steps:
            first = True
            for k, v in s.items():
                out.append("            %s %s: %s" % ("-" if first else " ", k, yq(v) if isinstance(v, str) else json.dumps(v)))
                first = False
        if outputs:
            out.append("        outputs:")
            out += ["            %s: %s" % (yq(k), yq(v)) for k, v in outputs.items()]
        return "\n".join(out) + "\n"

    def stop_task(self, task, status):
        task["status"] = status
        task["stopped"] = int(self.now())
        for s in task["steps"]:
            if s["status"] not in FINAL:
                s["status"] = status
        job = self.job_by_id(task["jobId"])
        if job:
            job["status"] = STATUS[status]
        self.after_final(task)

    def after_final(self, task):
        r = self.runner_by_id(task["runnerId"])
        if r and r["ephemeral"] and self.v >= (1, 24):
            self.runners.pop(r["uuid"], None)

    def admin_cancel(self, body):
        with self.lock:
            if body.get("taskId"):
                task = self.tasks.get(int(body["taskId"]))
                if not task:
                    raise RPCError("no such task", "not_found", 404)
                if task["status"] not in FINAL:
                    self.stop_task(task, 3)
                return {"taskId": task["id"], "status": STATUS[task["status"]]}
            job = self.job_by_id(int(body.get("jobId", 0)))
            if not job:
                raise RPCError("no such job", "not_found", 404)
            if job["taskId"]:
                task = self.tasks[job["taskId"]]
                if task["status"] not in FINAL:
                    self.stop_task(task, 3)
            elif job["status"] in ("waiting", "blocked"):
                job["status"] = "cancelled"
            return {"jobId": job["id"], "status": job["status"]}

    def admin_forget(self, body):
        with self.lock:
            u = body.get("uuid")
            if u:
                return {"forgotten": [u] if self.runners.pop(u, None) else []}
            gone = list(self.runners)
            self.runners.clear()
            return {"forgotten": gone}

    def admin_fault(self, body):
        proc = body.get("procedure")
        if proc not in PROCS + ("Ping",):
            raise RPCError("procedure must be one of %s" % (PROCS + ("Ping",),), "invalid_argument", 400)
        kind = body.get("kind")
        if kind not in ("status", "delay", "drop", "unauthenticated"):
            raise RPCError("kind must be status|delay|drop|unauthenticated", "invalid_argument", 400)
        f = {"kind": kind, "count": max(1, min(int(body.get("count", 1)), 1_000_000)),
             "status": int(body.get("status", 500)),
             "delayMs": max(0, min(int(body.get("delayMs", 0)), MAX_DELAY_MS))}
        with self.lock:
            self.faults.setdefault(proc, []).append(f)
        return {"queued": f, "procedure": proc}

    def admin_outage(self, body):
        secs = max(0.0, min(float(body.get("seconds", 0)), 600.0))
        with self.lock:
            self.outage_until = time.monotonic() + secs
        return {"outageSeconds": secs}

    def admin_clock(self, body):
        with self.lock:
            self.clock_offset += float(body.get("advanceSeconds", 0))
            self.housekeep()
            return {"now": fmt_ts(int(self.now())), "offsetSeconds": self.clock_offset}

    def housekeep(self):
        now = self.now()
        zombie, endless, abandoned = 600, 3 * 3600, 24 * 3600
        for t in self.tasks.values():
            if t["status"] == 6:
                if now - t["updated"] > zombie or now - t["started"] > endless:
                    self.stop_task(t, 2)
                    t["archived"] = True
        for j in self.jobs:
            if j["status"] in ("waiting", "blocked") and now - j["updated"] > abandoned:
                j["status"] = "cancelled"

    def take_fault(self, proc):
        with self.lock:
            q = self.faults.get(proc)
            if not q:
                return None
            f = q[0]
            f["count"] -= 1
            if f["count"] <= 0:
                q.pop(0)
            return dict(f)

    def job_by_id(self, jid):
        for j in self.jobs:
            if j["id"] == jid:
                return j
        return None

    def runner_by_id(self, rid):
        for r in self.runners.values():
            if r["id"] == rid:
                return r
        return None

    def admin_logstats(self, body):
        """A task's log without sending it: its row count and, for each needle, how many rows
        hold it (for a benchmark's check of a log of a million rows)."""
        tid = to_int(body.get("taskId"), "taskId")
        needles = [str(x) for x in body.get("needles") or []]
        with self.lock:
            t = self.tasks.get(tid)
            if t is None:
                raise KeyError("no task %d" % tid)
            rows = [x["content"] for x in t["log"]]
        return {"rows": len(rows), "hits": {n: sum(1 for c in rows if n in c) for n in needles}}

    def state(self, rows=True):
        with self.lock:
            return {
                "giteaVersion": self.version,
                "now": fmt_ts(int(self.now())),
                "tokens": [dict(t) for t in self.tokens],
                "runners": [{k: v for k, v in r.items() if k not in ("salt", "hash")} for r in self.runners.values()],
                "jobs": [{k: v for k, v in j.items()} for j in self.jobs],
                "tasks": [{
                    "id": t["id"], "jobId": t["jobId"], "runnerId": t["runnerId"],
                    "status": STATUS[t["status"]], "result": RESULTS[t["status"]] if t["status"] in FINAL else "RESULT_UNSPECIFIED",
                    "started": t["started"], "stopped": t["stopped"], "updated": t["updated"],
                    "steps": [{"index": s["index"], "name": s["name"], "status": STATUS[s["status"]],
                               "logIndex": s["logIndex"], "logLength": s["logLength"],
                               "started": s["started"], "stopped": s["stopped"]} for s in t["steps"]],
                    "outputs": dict(t["outputs"]), "logRows": [dict(x) for x in t["log"]] if rows else [],
                    "logLines": list(t["lines"]) if rows else [], "logLength": len(t["log"]), "archived": t["archived"],
                    "token": t["token"],
                } for t in self.tasks.values()],
                "tasksVersions": {"%s|%s" % k: v for k, v in self.versions.items()},
                "calls": dict(self.calls),
                "pendingFaults": {k: list(v) for k, v in self.faults.items() if v},
            }

    # ---- RPCs ------------------------------------------------------------
    def authenticate(self, headers, proc):
        u = headers.get("x-runner-uuid", "")
        tok = headers.get("x-runner-token", "")
        with self.lock:
            r = self.runners.get(u)
            if not r:
                raise RPCError(UNREG)
            h = hashlib.sha256((r["salt"] + tok).encode()).hexdigest()
            if not hmac.compare_digest(h, r["hash"]):
                raise RPCError(UNREG)
            now = self.now()
            r["lastOnline"] = now
            if proc in ("UpdateTask", "UpdateLog"):
                r["lastActive"] = now
            if (1, 20) <= self.v < (1, 22):
                ver = headers.get("x-runner-version", "")
                if self.v == (1, 20) or ver:
                    r["version"] = ver[:64]
            return r

    def runner_msg(self, r, with_token=None):
        m = {"id": str(r["id"]), "uuid": r["uuid"], "name": r["name"]}
        if with_token:
            m["token"] = with_token
        if self.v >= (1, 21):
            m["version"] = r["version"]
            m["labels"] = list(r["labels"])
        else:
            m["agentLabels"] = list(r["labels"])
            m["customLabels"] = list(r["customLabels"])
        if with_token and r["ephemeral"] and self.v >= (1, 24):
            m["ephemeral"] = True
        return omit(m)

    def ping(self, body, headers):
        d = field(body, "data")
        if d is not None and not isinstance(d, str):
            raise RPCError("invalid value for string field data", "invalid_argument", 400)
        return {"data": "Hello, %s!" % (d or "")}

    def register(self, body, headers):
        name = field(body, "name") or ""
        token = field(body, "token") or ""
        if not isinstance(name, str) or not isinstance(token, str):
            raise RPCError("invalid value for string field", "invalid_argument", 400)
        labels = str_list(field(body, "labels"), "labels")
        agent = str_list(field(body, "agentLabels", "agent_labels"), "agentLabels")
        custom = str_list(field(body, "customLabels", "custom_labels"), "customLabels")
        version = field(body, "version") or ""
        ephemeral = bool(field(body, "ephemeral", default=False))
        if not name or not token:
            raise RPCError("missing runner token, name")
        with self.lock:
            t = next((x for x in self.tokens if x["token"] == token), None)
            if not t:
                raise RPCError("runner registration token not found" if self.v >= (1, 21) else "runner token not found")
            if self.v >= (1, 21):
                if not t["active"]:
                    raise RPCError("runner registration token has been invalidated, please use the latest one")
            elif t["active"]:
                raise RPCError("runner token has already activated" if self.v == (1, 19)
                               else "runner token has already been activated")
            if self.v >= (1, 21):
                lab = labels if labels or self.v >= (1, 22) else agent
                cust = []
            else:
                lab, cust, version = agent, custom, ""
            plain = os.urandom(20).hex()
            salt = pysecrets.token_hex(5)
            r = {"id": self.next_runner_id, "uuid": str(pyuuid.uuid4()), "name": name[:255],
                 "version": version if self.v >= (1, 21) else "", "labels": lab, "customLabels": cust,
                 "owner": t["owner"], "repo": t["repo"],
                 "ephemeral": ephemeral and self.v >= (1, 24), "salt": salt,
                 "hash": hashlib.sha256((salt + plain).encode()).hexdigest(),
                 "lastOnline": 0, "lastActive": 0, "created": self.now()}
            self.next_runner_id += 1
            self.runners[r["uuid"]] = r
            t["active"] = True
            return {"runner": self.runner_msg(r, with_token=plain)}

    def declare(self, body, headers):
        r = self.authenticate(headers, "Declare")
        labels = str_list(field(body, "labels"), "labels")
        version = field(body, "version") or ""
        with self.lock:
            r["labels"] = labels
            r["version"] = version
            r["declares"] = r.get("declares", 0) + 1  # for tests: who declared, how often
            return {"runner": self.runner_msg(r)}

    def fetch_task(self, body, headers):
        r = self.authenticate(headers, "FetchTask")
        req_ver = to_int(field(body, "tasksVersion", "tasks_version"), "tasksVersion")
        with self.lock:
            if self.v >= (1, 24) and r["ephemeral"]:
                mine = [t for t in self.tasks.values() if t["runnerId"] == r["id"]]
                if mine:
                    if any(t["status"] not in FINAL for t in mine):
                        return {"tasksVersion": str(self.versions.get(self.runner_scope(r), 0) or 1)}
                    self.runners.pop(r["uuid"], None)
                    raise RPCError("rpc error: code = Internal desc = pick task: runner has been removed")
            resp = {}
            if self.v >= (1, 21):
                scope = self.runner_scope(r)
                latest = self.versions.get(scope, 0)
                if latest == 0:
                    o, rp = scope
                    self.bump(o, rp)
                    latest = self.versions[scope]
                resp["tasksVersion"] = str(latest)
                if req_ver == latest:
                    return resp
            labels = set(r["labels"]) | set(r.get("customLabels") or [])
            cands = [j for j in self.jobs if j["status"] == "waiting" and j["taskId"] == 0 and self.job_in_scope(r, j)]
            cands.sort(key=lambda j: (j["updated"], j["id"]) if self.v >= (1, 22) else (j["id"],))
            job = next((j for j in cands if set(j["runsOn"]) <= labels), None)
            if not job:
                return resp
            resp["task"] = self.create_task(r, job)
            return resp

    def create_task(self, r, job):
        now = self.now()
        tid = self.next_task_id
        self.next_task_id += 1
        job["attempt"] += 1
        job["status"] = "running"
        job["taskId"] = tid
        job["started"] = now
        job["updated"] = now
        ttoken = os.urandom(20).hex()
        steps = [{"index": i, "name": str(s.get("name") or s.get("run") or s.get("uses") or "step %d" % i)[:255],
                  "status": 5, "logIndex": 0, "logLength": 0, "started": 0, "stopped": 0}
                 for i, s in enumerate(job["steps"])]
        task = {"id": tid, "jobId": job["id"], "runnerId": r["id"], "status": 6, "token": ttoken,
                "started": int(now), "stopped": 0, "updated": now, "steps": steps, "outputs": {},
                "log": [], "lines": [], "archived": False}
        self.tasks[tid] = task
        owner, name = (job["repo"].split("/", 1) + [""])[:2]
        ev = job["event"]
        ref = ev.get("ref", "refs/heads/main")
        ref_name = ref
        ref_type = ""
        if self.v >= (1, 20):
            for pre, typ in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
                if ref.startswith(pre):
                    ref_name, ref_type = ref[len(pre):], typ
        base = self.app_url.rstrip("/")
        ctx = {
            "action": "", "action_path": "", "action_ref": "", "action_repository": "", "action_status": "",
            "actor": "alice", "api_url": base + "/api/v1" if self.v >= (1, 20) else "",
            "base_ref": "", "head_ref": "", "env": "", "event": ev, "event_name": "push", "event_path": "",
            "graphql_url": "", "job": job["job"] if self.v >= (1, 24) else str(job["id"]),
            "ref": ref, "ref_name": ref_name, "ref_protected": False, "ref_type": ref_type, "path": "",
            "repository": job["repo"], "repository_owner": owner, "repositoryUrl": base + "/" + job["repo"],
            "retention_days": "", "run_id": str(job["runId"]), "run_number": str(job["runId"]),
            "run_attempt": str(job["attempt"]), "secret_source": "Actions", "server_url": base + "/",
            "sha": ev.get("after", "0" * 40), "triggering_actor": "", "workflow": "ci.yml", "workspace": "",
            "gitea_default_actions_url": "https://github.com" if self.v >= (1, 20) else "https://gitea.com",
            "token": ttoken,
        }
        if self.v >= (1, 22):
            ctx["gitea_runtime_token"] = "double-runtime-token-%d" % tid
        ctx.update(job["context"])
        sec = {"GITHUB_TOKEN": ttoken, "GITEA_TOKEN": ttoken}
        sec.update(job["secrets"])
        msg = {"id": str(tid), "workflowPayload": base64.b64encode(job["payload"].encode()).decode(),
               "context": ctx, "secrets": sec}
        if self.v >= (1, 20) and job["needs"]:
            needs = {}
            for k, n in job["needs"].items():
                res = n.get("result", "RESULT_SUCCESS")
                if isinstance(res, int):
                    res = RESULTS[res]
                needs[k] = omit({"outputs": n.get("outputs") or {}, "result": res})
            msg["needs"] = needs
        if self.v >= (1, 21) and job["vars"]:
            msg["vars"] = dict(job["vars"])
        return omit(msg)

    def _own_task(self, r, tid, prefix):
        t = self.tasks.get(tid)
        if not t:
            raise RPCError("rpc error: code = Internal desc = %s: task with id %d: resource does not exist" % (prefix, tid))
        if self.v >= (1, 23) and t["runnerId"] != r["id"]:
            raise RPCError("rpc error: code = Internal desc = %sinvalid runner for task"
                           % ("update task: " if prefix == "update task" else ""))
        return t

    def update_task(self, body, headers):
        r = self.authenticate(headers, "UpdateTask")
        st = field(body, "state")
        if st is not None and not isinstance(st, dict):
            raise RPCError("invalid value for message field state", "invalid_argument", 400)
        st = st or {}
        tid = to_int(field(st, "id"), "state.id")
        result = to_enum(field(st, "result"), "state.result")
        steps_in = field(st, "steps") or []
        if not isinstance(steps_in, list):
            raise RPCError("invalid value for repeated field steps", "invalid_argument", 400)
        outputs = str_map(field(body, "outputs"), "outputs") if self.v >= (1, 20) else {}
        with self.lock:
            t = self._own_task(r, tid, "update task")
            now = self.now()
            if t["status"] not in FINAL:
                if result != 0:
                    t["status"] = result if result in FINAL else 2
                    t["stopped"] = parse_ts(field(st, "stoppedAt", "stopped_at")) or 0
                    job = self.job_by_id(t["jobId"])
                    if job:
                        job["status"] = STATUS[t["status"]]
                        job["stopped"] = t["stopped"]
                else:
                    t["updated"] = now
                by_id = {}
                for s in steps_in:
                    if isinstance(s, dict):
                        by_id[to_int(field(s, "id"), "step.id")] = s
                for row in t["steps"]:
                    s = by_id.get(row["index"])
                    if s is None:
                        continue
                    li = to_int(field(s, "logIndex", "log_index"), "logIndex")
                    ll = to_int(field(s, "logLength", "log_length"), "logLength")
                    sa = parse_ts(field(s, "startedAt", "started_at")) or 0
                    so = parse_ts(field(s, "stoppedAt", "stopped_at")) or 0
                    sr = to_enum(field(s, "result"), "step.result")
                    if li:
                        row["logIndex"] = li
                    if ll:
                        row["logLength"] = ll
                    if sa:
                        row["started"] = sa
                    if so:
                        row["stopped"] = so
                    if sr:
                        row["status"] = sr
                    elif sa:
                        row["status"] = 6
                if t["status"] in FINAL:
                    self.after_final(t)
            for k, v in outputs.items():
                if len(k.encode()) > MAX_OUTPUT_KEY or len(v.encode()) > MAX_OUTPUT_VALUE:
                    continue
                t["outputs"].setdefault(k, v)
            resp = {"state": omit({"id": str(t["id"]),
                                   "result": RESULTS[t["status"]] if t["status"] in FINAL else ""})}
            if self.v >= (1, 20) and t["outputs"]:
                resp["sentOutputs"] = list(t["outputs"])
            return resp

    def update_log(self, body, headers):
        r = self.authenticate(headers, "UpdateLog")
        tid = to_int(field(body, "taskId", "task_id"), "taskId")
        index = to_int(field(body, "index"), "index")
        rows = field(body, "rows") or []
        if not isinstance(rows, list) or not all(isinstance(x, dict) for x in rows):
            raise RPCError("invalid value for repeated field rows", "invalid_argument", 400)
        no_more = bool(field(body, "noMore", "no_more", False))
        with self.lock:
            t = self._own_task(r, tid, "get task")
            ack = len(t["log"])
            if not rows or index > ack or index + len(rows) <= ack:
                return omit({"ackIndex": str(ack)})
            if t["archived"]:
                raise RPCError("rpc error: code = AlreadyExists desc = log file has been archived")
            for row in rows[ack - index:]:
                content = field(row, "content") or ""
                if not isinstance(content, str):
                    raise RPCError("invalid value for string field content", "invalid_argument", 400)
                tm = field(row, "time") or ""
                sec = parse_ts(tm)
                stamp = datetime.fromtimestamp(sec or 0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
                line = content.replace("\n", "\\n")
                line = line.encode()[:MAX_LINE].decode("utf-8", "ignore")
                t["log"].append({"time": tm, "content": content})
                t["lines"].append("%s %s" % (stamp, line))
            if no_more:
                t["archived"] = True
            return omit({"ackIndex": str(len(t["log"]))})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server_version = "gitea-double"

    def log_message(self, fmt, *a):
        if self.server.verbose:
            sys.stderr.write("gitea-double: " + (fmt % a) + "\n")

    def send_raw(self, code, body, ctype, gzip_min=None):
        enc = None
        if gzip_min is not None and len(body) >= gzip_min and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body)
            enc = "gzip"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if enc:
            self.send_header("Content-Encoding", enc)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code, obj, gzip_min=None):
        self.send_raw(code, json.dumps(obj, ensure_ascii=False).encode(), "application/json", gzip_min)

    def send_error_rpc(self, e, gzip_min=None):
        self.send_json(e.http, omit({"code": e.code, "message": e.message}), gzip_min)

    def read_body(self):
        n = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline(64)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                if len(data) + size > MAX_BODY:
                    raise RPCError("request body too large", "resource_exhausted", 429)
                data += self.rfile.read(size)
                self.rfile.readline(8)
        try:
            n = int(n or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            raise RPCError("request body too large", "resource_exhausted", 429)
        return self.rfile.read(n) if n else b""

    def drop(self):
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        self.refuse()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def refuse(self):
        self.close_connection = True
        if self.path.startswith("/_admin/state") and self.command == "GET":
            return self.send_json(200, self.server.double.state())
        self.send_raw(405 if self.known(self.path) else 404,
                      b"405 method not allowed\n" if self.known(self.path) else b"404 page not found\n",
                      "text/plain; charset=utf-8")

    @staticmethod
    def known(p):
        return p == PING_PATH or (p.startswith(RUNNER_SVC) and p[len(RUNNER_SVC):] in PROCS)

    def do_POST(self):
        d = self.server.double
        path = self.path.split("?", 1)[0]
        try:
            body = self.read_body()
        except RPCError as e:
            return self.send_error_rpc(e)
        except (OSError, ValueError):
            self.close_connection = True
            return
        if path.startswith("/_admin/"):
            return self.admin(path[len("/_admin/"):], body)
        if path == PING_PATH:
            proc, gmin = "Ping", 0
        elif path.startswith(RUNNER_SVC) and path[len(RUNNER_SVC):] in PROCS:
            proc, gmin = path[len(RUNNER_SVC):], 1024
            if proc == "Declare" and d.v < (1, 21):
                return self.send_raw(404, b"404 page not found\n", "text/plain; charset=utf-8")
        else:
            return self.send_raw(404, b"404 page not found\n", "text/plain; charset=utf-8")
        with d.lock:
            d.calls[proc] = d.calls.get(proc, 0) + 1
            down = time.monotonic() < d.outage_until
        if down:  # the server is "down": the connection closes without an answer
            return self.drop()
        f = d.take_fault(proc)
        if f:
            if f["kind"] == "drop":
                return self.drop()
            if f["kind"] == "delay":
                time.sleep(f["delayMs"] / 1000.0)
            elif f["kind"] == "status":
                code = {500: "unknown", 503: "unavailable", 429: "resource_exhausted", 504: "deadline_exceeded",
                        502: "unavailable", 401: "unauthenticated", 404: "unimplemented"}.get(f["status"], "unknown")
                return self.send_json(f["status"], {"code": code, "message": "injected fault"})
            elif f["kind"] == "unauthenticated" and proc not in ("Ping", "Register"):
                return self.send_error_rpc(RPCError(UNREG), gmin)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self.send_raw(415, b"", "text/plain")
        if not body:
            return self.send_error_rpc(RPCError(
                "unmarshal into *v1.%sRequest: zero-length payload is not a valid JSON object" % proc,
                "invalid_argument", 400), gmin)
        try:
            req = json.loads(body.decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as e:
            return self.send_error_rpc(RPCError("unmarshal into *v1.%sRequest: %s" % (proc, e),
                                                "invalid_argument", 400), gmin)
        fn = {"Ping": d.ping, "Register": d.register, "Declare": d.declare, "FetchTask": d.fetch_task,
              "UpdateTask": d.update_task, "UpdateLog": d.update_log}[proc]
        try:
            resp = fn(req, {k.lower(): v for k, v in self.headers.items()})
        except RPCError as e:
            return self.send_error_rpc(e, gmin)
        except Exception as e:  # a bug in the double: still answer like Gitea would
            return self.send_error_rpc(RPCError("rpc error: code = Internal desc = double: %r" % e), gmin)
        with d.lock:
            d.events.append({"proc": proc, "at": d.now()})
            del d.events[:-1000]
        self.send_json(200, resp, gmin)

    def admin(self, what, body):
        d = self.server.double
        try:
            req = json.loads(body.decode("utf-8")) if body else {}
            if not isinstance(req, dict):
                raise ValueError("body must be a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            return self.send_json(400, {"code": "invalid_argument", "message": str(e)})
        fn = {"token": d.admin_token, "enqueue": d.admin_enqueue, "cancel": d.admin_cancel,
              "fault": d.admin_fault, "forget": d.admin_forget, "clock": d.admin_clock,
              "outage": d.admin_outage,
              "logstats": d.admin_logstats,
              "state": lambda b: d.state(rows=b.get("rows", True) is not False)}.get(what)
        if what == "shutdown":
            self.send_json(200, {"ok": True})
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        if fn is None:
            return self.send_raw(404, b"404 page not found\n", "text/plain; charset=utf-8")
        try:
            self.send_json(200, fn(req))
        except RPCError as e:
            self.send_error_rpc(e)
        except (ValueError, TypeError, KeyError) as e:
            self.send_json(400, {"code": "invalid_argument", "message": "%s: %s" % (type(e).__name__, e)})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--gitea-version", default="1.24",
                    choices=["1.19", "1.20", "1.21", "1.22", "1.23", "1.24", "1.25"])
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    srv = Server(("127.0.0.1", a.port), Handler)
    port = srv.server_address[1]
    srv.double = Double(a.gitea_version, "http://127.0.0.1:%d/" % port)
    srv.verbose = a.verbose
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    print("gitea-double %s listening on 127.0.0.1:%d" % (a.gitea_version, port), flush=True)

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
