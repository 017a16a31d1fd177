#!/usr/bin/env python3
"""runnerctl register against the Gitea double (tests/servers/gitea-double): registration with label
names on the wire and full label strings in the state database (mode 0600), no token on
stdout/stderr, refusing to overwrite an identity without --replace, Gitea's error message on a
bad token, usage errors (missing --token, bad label schema), config labels winning over
--label, --ephemeral (echoed by 1.24, warned about on 1.23), --gpu as a second identity,
RUNNERD_STATE, interactive prompts on a terminal, --import of an act_runner .runner file (and
its validation), and giving up on an unreachable server."""
import json
import os
import pty
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

RUNNERCTL = os.environ["RUNNERCTL"]
SRCDIR = os.environ.get("SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DOUBLE = os.path.join(SRCDIR, "tests", "servers", "gitea-double", "gitea_double.py")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import lib  # noqa: E402  (Tally: the named checks; the test image)
T = lib.Tally()
check = T.check


class Double:
    def __init__(self, tmp, version="1.24"):
        self.port_file = os.path.join(tmp, "port-" + version)
        self.proc = subprocess.Popen([sys.executable, DOUBLE, "--port", "0", "--port-file", self.port_file,
                                      "--gitea-version", version], stdout=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(self.port_file):
                break
            if self.proc.poll() is not None:
                raise RuntimeError("gitea double exited with %s" % self.proc.returncode)
            time.sleep(0.02)
        self.url = "http://127.0.0.1:%d" % int(open(self.port_file).read())

    def admin(self, what, body=None):
        req = urllib.request.Request(self.url + "/_admin/" + what, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def token(self):
        return self.admin("token")["token"]

    def runners(self):
        return self.admin("state")["runners"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(*args, env=None):
    p = subprocess.run([RUNNERCTL, "register", *args], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout, p.stderr


def identities(db):
    """The identities table, read-only: {cls: row dict}."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        con.row_factory = sqlite3.Row
        return {r["cls"]: dict(r) for r in con.execute("SELECT * FROM identities")}
    finally:
        con.close()


def main():
    tmp = tempfile.mkdtemp(prefix="register-test-")
    d = Double(tmp)
    d23 = None
    try:
        db = os.path.join(tmp, "state", "state.db")
        tok = d.token()
        base = ["--no-interactive", "--instance", d.url, "--state", db]

        # ---- a plain registration
        rc, out, err = run(*base, "--token", tok, "--name", "n1",
                           "--label", "matric-builder:docker://img", "--label", "x:host")
        check("register exits 0", rc == 0, "rc=%d stderr=%s" % (rc, err))
        check("stdout names the runner and its labels",
              "registered runner n1" in out and "matric-builder, x" in out, out)
        check("the token is not printed", tok not in out and tok not in err)
        rs = d.runners()
        check("the server has one runner", len(rs) == 1, repr(rs))
        check("label names only went on the wire", rs and rs[0]["labels"] == ["matric-builder", "x"],
              repr(rs))
        check("the name went on the wire", rs and rs[0]["name"] == "n1")
        check("the state db is 0600", stat.S_IMODE(os.stat(db).st_mode) == 0o600,
              oct(os.stat(db).st_mode))
        ids = identities(db)
        cpu = ids.get("cpu") or {}
        check("identity cpu stored", cpu.get("uuid") == (rs[0]["uuid"] if rs else None), repr(ids))
        check("identity keeps the full label strings",
              json.loads(cpu.get("labels") or "[]") == ["matric-builder:docker://img", "x:host"],
              repr(cpu.get("labels")))
        check("identity has the runner token (40 hex)",
              len(cpu.get("token") or "") == 40 and all(c in "0123456789abcdef" for c in cpu["token"]))
        check("identity has instance and name", cpu.get("instance") == d.url and cpu.get("name") == "n1")
        check("identity id matches the server", cpu.get("id") == rs[0]["id"] if rs else False)
        check("registered_ns is set", (cpu.get("registered_ns") or 0) > 1.6e18)
        first_uuid = cpu.get("uuid")

        # ---- a second registration of the same class
        rc, out, err = run(*base, "--token", tok, "--name", "n2", "--label", "x")
        check("second register without --replace fails (exit 1)", rc == 1, "rc=%d" % rc)
        check("... saying what is there and how to replace it",
              "already registered" in err and "--replace" in err and "n1" in err, err)
        check("... without calling Register", len(d.runners()) == 1)
        rc, out, err = run(*base, "--token", tok, "--name", "n2", "--label", "x", "--replace")
        check("register --replace succeeds", rc == 0, err)
        ids = identities(db)
        check("--replace stored the new identity",
              ids["cpu"]["name"] == "n2" and ids["cpu"]["uuid"] != first_uuid, repr(ids["cpu"]))
        check("--replace mentions the replaced runner", "replaced runner id 1" in out, out)

        # ---- --gpu: a second identity in the same database
        rc, out, err = run(*base, "--token", tok, "--name", "n1-gpu", "--label", "gpu:docker://cuda:12",
                           "--gpu")
        check("register --gpu succeeds", rc == 0, err)
        ids = identities(db)
        check("--gpu stores a second identity", sorted(ids) == ["cpu", "gpu"], repr(sorted(ids)))
        check("the gpu identity has its labels",
              json.loads(ids.get("gpu", {}).get("labels") or "[]") == ["gpu:docker://cuda:12"])
        check("the cpu identity is untouched", ids["cpu"]["name"] == "n2")

        # ---- errors
        bad = "notatoken0123456789notatoken0123456789ab"
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", os.path.join(tmp, "b.db"),
                           "--token", bad, "--label", "x")
        check("bad token: exit 1", rc == 1, "rc=%d" % rc)
        check("bad token: Gitea's message", "runner registration token not found" in err, err)
        check("bad token: not echoed", bad not in err and bad not in out)
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", os.path.join(tmp, "c.db"),
                           "--label", "x")
        check("missing --token: exit 2", rc == 2, "rc=%d" % rc)
        check("missing --token: named", "missing --token" in err, err)
        rc, out, err = run("--instance", d.url, "--state", os.path.join(tmp, "c.db"), "--label", "x")
        check("missing --token, stdin not a terminal: exit 2 (no prompt)", rc == 2, "rc=%d %s" % (rc, err))
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", os.path.join(tmp, "c.db"),
                           "--token", tok)
        check("missing labels: exit 2, named", rc == 2 and "--label" in err, "rc=%d %s" % (rc, err))
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", os.path.join(tmp, "c.db"),
                           "--token", tok, "--label", "a:ftp://x")
        check("bad label schema: exit 2", rc == 2, "rc=%d" % rc)
        check("bad label schema: names the label", "a:ftp://x" in err and "ftp" in err, err)
        rc, out, err = run("--no-interactive", "--instance", "gitea.example.com", "--state",
                           os.path.join(tmp, "c.db"), "--token", tok, "--label", "x")
        check("instance without a scheme: exit 2", rc == 2 and "http://" in err, "rc=%d %s" % (rc, err))
        rc, out, err = run("--bogus")
        check("unknown option: exit 2", rc == 2 and "--bogus" in err, "rc=%d %s" % (rc, err))
        check("no runner was registered by the failures", len(d.runners()) == 3)

        # ---- config labels win over --label, with a warning; --labels a,b
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write("runner:\n  labels:\n    - \"cfg-a:docker://node:20\"\n    - \"cfg-b:host\"\n")
        db2 = os.path.join(tmp, "cfg.db")
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", db2, "--token", tok,
                           "--name", "c1", "-c", cfg, "--labels", "cli-a,cli-b")
        check("register -c CONFIG succeeds", rc == 0, err)
        check("config labels win, with a warning", "warning" in err and "runner.labels" in err, err)
        r = [x for x in d.runners() if x["name"] == "c1"]
        check("config label names on the wire", r and r[0]["labels"] == ["cfg-a", "cfg-b"], repr(r))
        check("config label strings stored",
              json.loads(identities(db2)["cpu"]["labels"]) == ["cfg-a:docker://node:20", "cfg-b:host"])
        db3 = os.path.join(tmp, "labels.db")
        rc, out, err = run("--no-interactive", "--instance", d.url, "--state", db3, "--token", tok,
                           "--name", "l1", "--labels", "la, lb:docker://alpine")
        r = [x for x in d.runners() if x["name"] == "l1"]
        check("--labels a,b", rc == 0 and r and r[0]["labels"] == ["la", "lb"], "%s %r" % (err, r))

        # ---- RUNNERD_STATE, --ephemeral
        db4 = os.path.join(tmp, "env", "runnerd.db")
        rc, out, err = run("--no-interactive", "--instance", d.url, "--token", tok, "--name", "e1",
                           "--label", "x", "--ephemeral", env={"RUNNERD_STATE": db4})
        check("RUNNERD_STATE is used", rc == 0 and os.path.exists(db4), "rc=%d %s" % (rc, err))
        check("ephemeral echoed by 1.24: no warning", "warning" not in err, err)
        check("ephemeral stored", identities(db4)["cpu"]["ephemeral"] == 1)
        r = [x for x in d.runners() if x["name"] == "e1"]
        check("ephemeral requested on the wire", r and r[0]["ephemeral"] is True, repr(r))
        d23 = Double(tmp, "1.23")
        rc, out, err = run("--no-interactive", "--instance", d23.url, "--token", d23.token(), "--name",
                           "e2", "--label", "x", "--ephemeral", "--state", os.path.join(tmp, "e2.db"))
        check("ephemeral on 1.23: registered with a warning",
              rc == 0 and "warning" in err and "ephemeral" in err, "rc=%d %s" % (rc, err))
        check("ephemeral on 1.23: stored as not ephemeral",
              identities(os.path.join(tmp, "e2.db"))["cpu"]["ephemeral"] == 0)

        # ---- interactive: stdin is a terminal, so the missing values are asked for
        master, slave = pty.openpty()
        dbt = os.path.join(tmp, "tty.db")
        p = subprocess.Popen([RUNNERCTL, "register", "--state", dbt], stdin=slave,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        os.write(master, ("%s\n%s\n\nia:host, ib:docker://alpine\n" % (d.url, tok)).encode())
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        os.close(master)
        check("interactive register succeeds", p.returncode == 0, "rc=%s %s" % (p.returncode, err))
        check("interactive: prompts on stderr", "instance URL" in err and "registration token" in err, err)
        check("interactive: the token is not printed", tok not in out + err)
        r = [x for x in d.runners() if x["name"] == socket.gethostname()]
        check("interactive: default name is the hostname, labels as typed",
              r and r[-1]["labels"] == ["ia", "ib"], repr(d.runners()))

        # ---- unreachable server: gives up with a clear error
        t0 = time.monotonic()
        rc, out, err = run("--no-interactive", "--instance", "http://127.0.0.1:%d" % lib.free_port(), "--token",
                           tok, "--label", "x", "--state", os.path.join(tmp, "u.db"), "--ping-timeout", "2")
        check("unreachable: exit 1 with 'giving up'", rc == 1 and "giving up" in err, "rc=%d %s" % (rc, err))
        check("unreachable: bounded by --ping-timeout", time.monotonic() - t0 < 30)

        # ---- --import of an act_runner .runner file
        runner_file = os.path.join(tmp, ".runner")
        reg = {
            "WARNING": "This file is automatically generated by act-runner. Do not edit it manually "
                       "unless you know what you are doing. Removing this file will cause act runner "
                       "to re-register as a new runner.",
            "id": 7, "uuid": "a1b2c3d4-0000-4000-8000-0123456789ab", "name": "build-01",
            "token": "3f1c9e0a5b7d2c4e6f8091a2b3c4d5e6f7a8b9c0", "address": "https://gitea.example.com",
            "labels": ["ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest",
                       "macos-arm64:host"],
            "ephemeral": False,
        }
        with open(runner_file, "w") as f:
            json.dump(reg, f, indent=2)
        dbi = os.path.join(tmp, "import.db")
        calls_before = d.admin("state")["calls"].get("Register", 0)
        rc, out, err = run("--import", runner_file, "--state", dbi)
        check("--import exits 0", rc == 0, "rc=%d %s" % (rc, err))
        check("--import does not print the token", reg["token"] not in out + err)
        check("--import names the runner and labels",
              "build-01" in out and "ubuntu-latest, macos-arm64" in out, out)
        idi = identities(dbi).get("cpu") or {}
        check("--import stores the identity",
              idi.get("id") == 7 and idi.get("uuid") == reg["uuid"] and idi.get("token") == reg["token"]
              and idi.get("instance") == reg["address"] and idi.get("name") == "build-01", repr(idi))
        check("--import keeps the full label strings", json.loads(idi.get("labels") or "[]") == reg["labels"])
        check("--import calls no Register", d.admin("state")["calls"].get("Register", 0) == calls_before)
        rc, out, err = run("--import", runner_file, "--state", dbi)
        check("--import twice without --replace: exit 1", rc == 1 and "--replace" in err, err)
        rc, out, err = run("--import", runner_file, "--state", dbi, "--replace", "-c", cfg)
        check("--import -c CONFIG notes the config labels",
              rc == 0 and "cfg-a" in out and "precedence" in out, "rc=%d %s %s" % (rc, out, err))
        st = subprocess.run([RUNNERCTL, "status", "--state", dbi], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
        if st.returncode == 0:
            check("runnerctl status shows the imported runner", "build-01" in st.stdout, st.stdout)
            check("runnerctl status does not show the token", reg["token"] not in st.stdout + st.stderr)
        else:
            print("skip runnerctl status (exit %d)" % st.returncode)

        def bad_import(name, mutate, expect):
            r2 = dict(reg)
            mutate(r2)
            path = os.path.join(tmp, "bad.runner")
            with open(path, "w") as f:
                json.dump(r2, f)
            rc2, out2, err2 = run("--import", path, "--state", os.path.join(tmp, "bad.db"))
            check("--import rejects " + name, rc2 == 2 and "bad.runner" in err2 and expect in err2,
                  "rc=%d %s" % (rc2, err2))
            check("--import rejects %s without echoing the token" % name, reg["token"] not in err2)

        bad_import("a missing uuid", lambda r2: r2.pop("uuid"), '"uuid"')
        bad_import("a string id", lambda r2: r2.update(id="seven"), '"id"')
        bad_import("a bad uuid", lambda r2: r2.update(uuid="nope"), '"uuid"')
        bad_import("an empty token", lambda r2: r2.update(token=""), '"token"')
        bad_import("a bad label", lambda r2: r2.update(labels=["a:ftp://x"]), "a:ftp://x")
        bad_import("labels that are not a list", lambda r2: r2.update(labels="x"), '"labels"')
        bad_import("a missing address", lambda r2: r2.pop("address"), '"address"')
        path = os.path.join(tmp, "broken.runner")
        with open(path, "w") as f:
            f.write("{not json")
        rc, out, err = run("--import", path, "--state", os.path.join(tmp, "bad.db"))
        check("--import rejects bad JSON, naming the file", rc == 2 and "broken.runner" in err, err)
        rc, out, err = run("--import", runner_file, "--state", os.path.join(tmp, "bad.db"), "--token", tok)
        check("--import with --token is a usage error", rc == 2, "rc=%d %s" % (rc, err))
        rc, out, err = run("--import", runner_file, "--state", os.path.join(tmp, "gpu-import.db"), "--gpu")
        check("--import --gpu stores the gpu identity",
              rc == 0 and list(identities(os.path.join(tmp, "gpu-import.db"))) == ["gpu"], err)
    finally:
        d.stop()
        if d23:
            d23.stop()
        subprocess.call(["rm", "-rf", tmp])
    print("%d failed" % T.failures)
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
