#!/usr/bin/env python3
"""Every command finds the state database by one rule, runnerd's: --state, else $RUNNERD_STATE,
else runnerd.state_file of -c CONFIG, else /var/lib/runnerd/runnerd.db. With -c CONFIG naming a
state_file in a temporary directory: `register --import` stores the identity there (and not at
the default path); status, tasks and logs with the same -c read it; runnerd with the same -c
opens that database (it starts, so it found the identity) and `restart -c` finds it through the
pid file next to it. --state and $RUNNERD_STATE still win over the config."""
import json
import os
import subprocess
import sys
import tempfile
import time

RUNNERCTL = os.environ["RUNNERCTL"]
RUNNERD = os.path.join(os.path.dirname(RUNNERCTL), "runnerd")
DEFAULT = "/var/lib/runnerd/runnerd.db"
failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print("ok   " + name)
    else:
        failures += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("RUNNERD_STATE", None)
    e.update(env or {})
    p = subprocess.run([RUNNERCTL, *args], capture_output=True, text=True, timeout=60, env=e,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def main():
    tmp = tempfile.mkdtemp(prefix="state-path-test-")
    db = os.path.join(tmp, "custom", "r.db")
    os.makedirs(os.path.dirname(db))
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write("runnerd:\n  state_file: %s\n" % db)
    runner = os.path.join(tmp, ".runner")
    with open(runner, "w") as f:
        json.dump({"id": 42, "uuid": "0d3f5c2a-1111-2222-3333-444455556666", "name": "sp-runner",
                   "token": "tok-SECRET-77", "address": "http://127.0.0.1:9",
                   "labels": ["sp:host"]}, f)
    default_existed = os.path.exists(DEFAULT)
    default_dir_existed = os.path.isdir(os.path.dirname(DEFAULT))
    proc = None
    try:
        rc, out, err = run("register", "--import", runner, "-c", cfg)
        check("register -c exits 0", rc == 0, "rc=%d %s %s" % (rc, out, err))
        check("register -c names the configured database", ("stored in %s" % db) in out, out)
        check("register -c writes runnerd.state_file", os.path.exists(db))
        if not default_existed:
            check("register -c leaves the default database alone", not os.path.exists(DEFAULT))

        for cmd in (["status"], ["tasks"], ["logs", "1"]):
            rc, out, err = run(*cmd, "-c", cfg)
            name = " ".join(cmd)
            if cmd[0] == "logs":
                check("logs -c reads runnerd.state_file",
                      rc == 1 and ("no task 1 in %s" % db) in err, "rc=%d %s" % (rc, err))
            elif cmd[0] == "tasks":
                check("tasks -c reads runnerd.state_file",
                      rc == 0 and ("no tasks in %s" % db) in out, "rc=%d %s %s" % (rc, out, err))
            else:
                check("status -c reads runnerd.state_file",
                      rc == 0 and ("state: %s" % db) in out and "sp-runner" in out,
                      "rc=%d %s %s" % (rc, out, err))
            check("%s -c prints no token" % name, "tok-SECRET-77" not in out + err)

        # Precedence: --state, then $RUNNERD_STATE, then the config.
        other = os.path.join(tmp, "other.db")
        rc, out, err = run("status", "-c", cfg, "--state", other)
        check("--state beats runnerd.state_file",
              rc == 1 and ("%s: no state database" % other) in err, "rc=%d %s" % (rc, err))
        rc, out, err = run("tasks", "-c", cfg, env={"RUNNERD_STATE": other})
        check("$RUNNERD_STATE beats runnerd.state_file",
              rc == 1 and ("%s: no state database" % other) in err, "rc=%d %s" % (rc, err))
        rc, out, err = run("status", "-c", os.path.join(tmp, "missing.yaml"))
        check("status -c with a missing config exits 2", rc == 2, "rc=%d %s" % (rc, err))

        # runnerd with the same -c opens the database register wrote: it finds the identity and
        # stays up, holding the pid file next to it, where restart -c looks.
        log = open(os.path.join(tmp, "runnerd.log"), "w")
        env = dict(os.environ)
        env.pop("RUNNERD_STATE", None)
        proc = subprocess.Popen([RUNNERD, "-c", cfg], stdout=log, stderr=subprocess.STDOUT,
                                env=env, stdin=subprocess.DEVNULL)
        pidfile = db + ".pid"
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                if open(pidfile).read() == "%d\n" % proc.pid:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        time.sleep(1.0)  # it reads the identities after taking the lock
        log.flush()
        check("runnerd -c runs on register's database",
              proc.poll() is None and os.path.exists(pidfile) and
              "no runner is registered" not in open(os.path.join(tmp, "runnerd.log")).read(),
              "exit=%s log=%s" % (proc.poll(), open(os.path.join(tmp, "runnerd.log")).read()))
        rc, out, err = run("restart", "-c", cfg, "--drain", "--wait", "30")
        check("restart -c finds that runnerd", rc == 0 and ("runnerd (pid %d) stopped" % proc.pid)
              in out, "rc=%d %s %s" % (rc, out, err))
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        # The old rule wrote the default database: leave the machine as it was.
        if not default_existed and os.path.exists(DEFAULT):
            for suffix in ("", "-wal", "-shm", "-journal", ".pid"):
                if os.path.exists(DEFAULT + suffix):
                    os.unlink(DEFAULT + suffix)
            if not default_dir_existed:
                try:
                    os.rmdir(os.path.dirname(DEFAULT))
                except OSError:
                    pass
        subprocess.run(["rm", "-rf", tmp])
    if failures:
        print("%d check(s) failed" % failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
