#!/usr/bin/env python3
"""Hostile faults (issue 13): the real `runnerctl register` and `runnerd` against the Gitea double
(tests/servers/gitea-double) and the real Docker engine, with the offline busybox test image.

Scenarios:
  secrets   a task with a secret is killed -9 mid-step and resumed: while it runs the state
            database still holds its secrets (the resumed step uses one); once it is done, the
            raw bytes of the database, its -wal and its -shm hold neither the secret, nor the
            task token, nor the runtime token, and the output that held the secret is
            not stored (dropped with a warning)
  teardown  runnerd is killed -9 while the job's container is being removed (an engine proxy
            holds the DELETE until the kill), twice (the removal then happens, or never does):
            after a restart the double gets the steps' success and every row exactly once, and
            nothing is left behind
  diskfull  the state database on a 2 MB tmpfs: while free space is under
            runnerd.min_free_disk no task is fetched; then a step prints 60,000 rows into the
            disk, which stays full: the job's result is the steps' (success), one row says how
            many rows were lost (the rows that arrived plus those lost are all the rows), the
            job's last row arrives and the log is closed (archived)
  diskback  the same flood, then space returns while the next step sleeps: the spool takes
            rows again (the row that says rows were lost and the next step's rows are stored
            and arrive)

Environment: RUNNERCTL, RUNNERD, SRCDIR. Run some scenarios with `faults.py NAME...`."""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import lib as base  # noqa: E402  (the Gitea double wrapper, Runner and helpers)
sys.path.insert(0, os.path.join(SRC, "tests", "servers"))
import engineproxy  # noqa: E402  (pipe: one direction of a proxied connection)

check, wait_until, rows_of, step_rows = base.check, base.wait_until, base.rows_of, base.step_rows
LIVE = []    # runnerd processes a scenario started: killed after it, however it ended
MOUNTS = []  # tmpfs mounts to undo


class Runner(base.Runner):
    """lib.py's Runner with its own environment (DOCKER_HOST through a proxy), its state
    database in state_dir (a small filesystem) and more runnerd: settings."""
    live = LIVE

    def __init__(self, d, tmp, name, image, env=None, state_dir=None, runnerd=""):
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.d = d
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state = os.path.join(state_dir or self.dir, "state.db")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("runner:\n  capacity: 1\n  fetch_interval: 1s\n  shutdown_timeout: 30s\n"
                    "runnerd:\n  fetch_interval_max: 2s\n" + runnerd)
        token = d.admin("token")["token"]
        r = subprocess.run([base.RUNNERCTL, "register", "--no-interactive", "--instance", d.url, "--token", token,
                            "--name", name, "--label", "matric-builder:docker://" + image, "--state", self.state],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "register %s: %s" % (name, r.stderr.strip()))
        self.proc = None
        self.logs = 0
        self.owner = "runnerd@%s:%s" % (os.uname().nodename, os.path.realpath(self.state))

    def kill9(self):
        self.proc.kill()
        self.wait(10)

    def raw(self):
        """The raw bytes of the database and its -wal and -shm (what exists of them)."""
        out = b""
        for suffix in ("", "-wal", "-shm"):
            p = self.state + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out += f.read()
        return out


# ---------------------------------------------------------------- an engine proxy

class Proxy:
    """A Docker Engine API proxy on a unix socket, in this process: requests go to the real
    engine unchanged, except that while `hold` is set a DELETE of a container waits (`held` is
    set when one arrives) until `release` is set, and is then sent on (or, with `drop`, never
    sent: the container outlives runnerd)."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "engine.sock")
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.drop = False
        self.deletes = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    pipe = staticmethod(engineproxy.pipe)

    def handle(self, cl):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect("/var/run/docker.sock")
        threading.Thread(target=self.pipe, args=(up, cl), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    b = cl.recv(65536)
                    if not b:
                        return
                    buf += b
                i = buf.index(b"\r\n\r\n") + 4
                head, buf = buf[:i], buf[i:]
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                path = urllib.parse.urlparse(target).path
                length = 0
                chunked = upgrade = False
                for h in lines[1:]:
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                    elif k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                    elif k.strip().lower() == "upgrade":
                        upgrade = True
                if method == "DELETE" and "/containers/" in path:
                    self.deletes.append(path)
                    if self.hold.is_set():
                        self.held.set()
                        self.release.wait(120)
                        if self.drop:
                            return  # never reaches the engine
                if chunked or upgrade or path.endswith("/attach"):
                    # Streams and chunked bodies: pass the rest of the connection through as is.
                    up.sendall(head + buf)
                    self.pipe(cl, up)
                    return
                while len(buf) < length:
                    b = cl.recv(65536)
                    if not b:
                        return
                    buf += b
                up.sendall(head + buf[:length])
                buf = buf[length:]
        except OSError:
            pass
        finally:
            try:
                up.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def stop(self):
        self.release.set()
        self.srv.close()


# ---------------------------------------------------------------- scenarios

SECRET = "s3cr3t-Hostile-9d81c4e0"


def sc_secrets(d, tmp, image):
    r = Runner(d, tmp, "secrets", image)
    r.start()
    n = 20
    job = base.enqueue(d, [
        {"name": "show", "id": "show", "run": "echo \"the secret is ${{ secrets.MY_SECRET }}\"; "
                                             "echo \"v=${{ secrets.MY_SECRET }}\" >> \"$GITHUB_OUTPUT\""},
        {"name": "long", "run": "for i in $(seq 1 %d); do echo line $i; sleep 0.3; done" % n},
        {"name": "use", "run": "test \"${{ secrets.MY_SECRET }}\" = %s && echo secret-ok" % SECRET},
    ], secrets={"MY_SECRET": SECRET}, outputs={"leak": "${{ steps.show.outputs.v }}"})
    t = wait_until(lambda: (lambda t: t if t and "line 5" in rows_of(t) else None)(d.task_of_job(job)), 60,
                   "line 5 before the kill")
    if t is None:
        return
    token = t["token"]
    runtime = "double-runtime-token-%d" % t["id"]
    r.kill9()
    raw = r.raw()
    check(SECRET.encode() in raw and token.encode() in raw,
          "secrets: a running task's secrets are kept in the state database (it must resume)")
    r.start()
    t = base.final_task(d, job, 90)
    if t is None:
        return
    check(t["status"] == "success", "secrets: task %s" % t["status"])
    check(step_rows(t, 2) == ["secret-ok"], "secrets: the resumed job still has its secret: %s" % step_rows(t, 2))
    check(any(x == "the secret is ***" for x in rows_of(t)), "secrets: the secret is masked in the log")
    check(not any(SECRET in x for x in rows_of(t)), "secrets: no log row holds the secret")
    # Done: the record is scrubbed (the reporter marks it done right after the final state).
    done = wait_until(lambda: (lambda v: v if v and v[0] == "done" else None)(task_state(r, t["id"])), 20,
                      "the task to be done in the store")
    check(done is not None, "secrets: the task is done in the store")
    time.sleep(1)
    raw = r.raw()
    for what, v in (("the secret", SECRET), ("the task token", token), ("the runtime token", runtime)):
        check(v.encode() not in raw, "secrets: %s is not in the raw database, -wal or -shm after the task ended "
              "(%d bytes scanned)" % (what, len(raw)))
    if done:
        outs = json.loads(done[1] or "{}")
        # An output holding a secret is dropped when the job ends (as GitHub does), so it is not
        # stored at all (task.c masks the outputs it keeps as a second guard).
        check("leak" not in outs and SECRET not in json.dumps(outs),
              "secrets: the output that held the secret is not stored: %s" % outs)
    check(r.stop() == 0, "secrets: runnerd exits 0")
    raw = r.raw()
    check(SECRET.encode() not in raw and token.encode() not in raw,
          "secrets: nor after runnerd stopped")


def task_state(r, tid):
    """(state, outputs) of a task in the store, read without a write lock."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % r.state, uri=True, timeout=5)
        try:
            return db.execute("SELECT state, outputs FROM tasks WHERE id = ?", (tid,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None


def sc_teardown(d, tmp, image):
    for attempt in (1, 2):
        sub = os.path.join(tmp, "teardown-%d" % attempt)
        os.makedirs(sub)
        px = Proxy(sub)
        r = Runner(d, sub, "teardown", image, env={"DOCKER_HOST": "unix://" + px.path})
        r.start()
        px.hold.set()
        job = base.enqueue(d, [{"name": "one", "run": "echo one-$((20 + 1))"},
                               {"name": "two", "run": "for i in 1 2 3; do echo two-$i; done"}])
        held = wait_until(lambda: px.held.is_set(), 90, "the container's removal (attempt %d)" % attempt)
        if held:
            r.kill9()
        # First the engine removes the container while runnerd is down; then it never hears
        # of the removal, and the container is still there when runnerd starts again.
        px.drop = attempt == 2
        px.hold.clear()
        px.release.set()
        time.sleep(1)
        r.start()
        t = base.final_task(d, job, 60)
        px_deletes = len(px.deletes)
        if t is not None:
            rows = rows_of(t)
            check(t["status"] == "success", "teardown %d: task %s (rows %s)" % (attempt, t["status"], rows[-4:]))
            check(step_rows(t, 0) == ["one-21"], "teardown %d: step one's rows once: %s" % (attempt, step_rows(t, 0)))
            check(step_rows(t, 1) == ["two-1", "two-2", "two-3"],
                  "teardown %d: step two's rows once: %s" % (attempt, step_rows(t, 1)))
            check(rows.count("one-21") == 1 and rows.count("two-3") == 1, "teardown %d: no row twice" % attempt)
            check(sum(1 for x in rows if x.startswith("🏁")) == 1 and "🏁  Job succeeded" in rows,
                  "teardown %d: one final row, success: %s" % (attempt, rows[-3:]))
            check(not any("container is gone" in x for x in rows), "teardown %d: no 'container is gone'" % attempt)
            check([s["status"] for s in t["steps"]] == ["success", "success"],
                  "teardown %d: steps succeeded: %s" % (attempt, [s["status"] for s in t["steps"]]))
        check(held is not None and px_deletes >= 1, "teardown %d: runnerd was killed during the removal" % attempt)
        base.check_no_leftovers(r, "teardown %d" % attempt)
        check(r.stop() == 0, "teardown %d: runnerd exits 0" % attempt)
        px.stop()


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bavail * v.f_frsize


def fill_to(path, filler, free):
    """Grows or shrinks filler so that about `free` bytes stay free on path's filesystem."""
    size = os.path.getsize(filler) if os.path.exists(filler) else 0
    target = max(0, size + free_bytes(path) - free)
    with open(filler, "ab") as f:
        f.truncate(0)
    with open(filler, "wb") as f:
        left = target
        try:
            while left > 0:
                k = min(left, 65536)
                f.write(b"\0" * k)
                left -= k
            f.flush()
        except OSError:
            pass


def small_fs(tmp, name, size="2m"):
    """A small tmpfs (2 MB unless size says) under tmp (unmounted at the end), or None."""
    small = os.path.join(tmp, name + "-fs")
    os.makedirs(small)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", small],
                       capture_output=True, text=True)
    if not check(m.returncode == 0, "%s: mount a %s tmpfs (needs root): %s" % (name, size, m.stderr.strip())):
        return None
    MOUNTS.append(small)
    return small


def lost_of(rows):
    """The number the row that says rows were lost gives (0: no such row; -1: unreadable)."""
    for x in rows:
        if "were lost" in x:
            try:
                return int(x.split("::warning::")[-1].split()[0])
            except ValueError:
                return -1
    return 0


def check_flood(name, t, n):
    rows = rows_of(t)
    got = [int(x[4:].split()[0]) for x in rows if x.startswith("row-")]
    lost = lost_of(rows)
    check(t["status"] == "success", "%s: the job's result is the steps' (success): %s" % (name, t["status"]))
    check(sum(1 for x in rows if "were lost" in x) == 1, "%s: one row says rows were lost: %s"
          % (name, [x for x in rows if "were lost" in x]))
    check(0 < len(got) < n, "%s: the disk was really full (%d of %d rows arrived)" % (name, len(got), n))
    check(len(got) + lost == n, "%s: rows that arrived (%d) + rows lost (%d) = %d" % (name, len(got), lost, n))
    check(got == sorted(set(got)), "%s: the rows that arrived came once each, in order" % name)
    check(rows and rows[-1] == "🏁  Job succeeded", "%s: the log ends with the job's end: %s" % (name, rows[-1:]))
    check(t["archived"], "%s: the log is closed (noMore)" % name)


def stored_rows(r, tid):
    db = sqlite3.connect(r.state)
    try:
        return [c for (c,) in db.execute("SELECT content FROM log_rows WHERE task_id = ? ORDER BY idx", (tid,))]
    finally:
        db.close()


# 60,000 rows of 60 bytes: the first half fills the disk, the second comes once runnerd knows.
FLOOD = ("seq 1 30000 | sed 's/^/row-/; s/$/ .........................................../'; sleep 3; "
         "seq 30001 60000 | sed 's/^/row-/; s/$/ .........................................../'")

# The same with short rows: once the filler is gone, the disk has room for those kept in memory.
FLOOD_SHORT = "seq 1 30000 | sed 's/^/row-/'; sleep 3; seq 30001 60000 | sed 's/^/row-/'"


def sc_diskfull(d, tmp, image):
    small = small_fs(tmp, "diskfull")
    if small is None:
        return
    r = Runner(d, tmp, "diskfull", image, state_dir=small, runnerd="  min_free_disk: 409600\n")
    filler = os.path.join(small, "filler")
    fill_to(small, filler, 200 << 10)
    r.start()
    n = 60000
    job = base.enqueue(d, [{"name": "flood", "run": FLOOD}])
    # Under min_free_disk: no task is fetched.
    time.sleep(6)
    check(d.task_of_job(job) is None, "diskfull: no task taken while free space (%d KiB) is under "
          "min_free_disk (400 KiB)" % (free_bytes(small) >> 10))
    check("not taking tasks" in r.log_text(), "diskfull: runnerd says why it takes no task")
    # Room for the task, not for its log; the disk stays full to the end.
    fill_to(small, filler, 600 << 10)
    t = base.final_task(d, job, 120)
    if t is None:
        return
    check("taking tasks" in r.log_text() and "saving state" in r.log_text(),
          "diskfull: runnerd took the task once there was room, then its spool failed")
    check_flood("diskfull", t, n)
    check(r.stop() == 0, "diskfull: runnerd exits 0")


def sc_diskback(d, tmp, image):
    # 8 MB: once the filler goes, the room must hold every row that waited in memory (how many
    # did depends on how fast the flood ran before the first failed write) and their WAL copy;
    # on 2 MB a slow run's backlog filled the disk again and the last rows stayed in memory.
    small = small_fs(tmp, "diskback", "8m")
    if small is None:
        return
    r = Runner(d, tmp, "diskback", image, state_dir=small, runnerd="  min_free_disk: 102400\n")
    filler = os.path.join(small, "filler")
    fill_to(small, filler, 300 << 10)
    r.start()
    n = 60000
    job = base.enqueue(d, [{"name": "flood", "run": FLOOD_SHORT},
                           {"name": "later", "run": "sleep 15; echo after-space"}])
    wait_until(lambda: "saving state" in r.log_text(), 90, "the spool to fail (disk full)")
    time.sleep(3)
    os.unlink(filler)  # space returns while step two sleeps
    t = base.final_task(d, job, 120)
    if t is None:
        return
    check_flood("diskback", t, n)
    # The row saying rows were lost goes to the step open when the store took rows again: the
    # flood's, or (the flood over by then) this one's, before its own row; never elsewhere.
    flood, later = step_rows(t, 0), step_rows(t, 1)
    check([x for x in later if "were lost" not in x] == ["after-space"],
          "diskback: rows after space returned arrive: %s" % later)
    check(all(x.startswith("row-") or "were lost" in x for x in flood) and
          sum(1 for x in flood + later if "were lost" in x) == 1,
          "diskback: each step's log holds its own rows and the lost-rows row once: %s / %s"
          % ([x for x in flood if not x.startswith("row-")], later))
    check("takes its rows again" in r.log_text(), "diskback: runnerd spools again once space returns")
    check(r.stop() == 0, "diskback: runnerd exits 0")
    stored = stored_rows(r, t["id"])
    check("after-space" in stored and lost_of(stored) == lost_of(rows_of(t)),
          "diskback: the spool holds the row saying rows were lost and the rows after it")


def check_sanitizers(tmp, name):
    """No runnerd of the scenario reported undefined behaviour, a memory error or a leak."""
    for root, _, files in os.walk(tmp):
        for f in files:
            if f.startswith("runnerd.") and f.endswith(".log") and name in root:
                text = open(os.path.join(root, f), errors="replace").read()
                bad = [x for x in ("runtime error:", "AddressSanitizer", "LeakSanitizer") if x in text]
                check(not bad, "%s: %s says %s" % (name, f, bad))


SCENARIOS = [("secrets", sc_secrets), ("teardown", sc_teardown), ("diskfull", sc_diskfull),
             ("diskback", sc_diskback)]


def after(tmp, name):
    base.kill_live(LIVE)
    check_sanitizers(tmp, name)


def logs(tmp, name):
    return base.runnerd_logs(tmp, lambda root, f: f.endswith(".log") and name in root,
                             lambda root, f: os.path.join(root, f))


def cleanup(tmp):
    base.kill_live(LIVE)
    for mnt in MOUNTS:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def main():
    return base.suite("runnerd-faults-", SCENARIOS, after, logs, tail=5000, cleanup=cleanup)


if __name__ == "__main__":
    sys.exit(main())
