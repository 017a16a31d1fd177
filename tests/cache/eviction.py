#!/usr/bin/env python3
"""Eviction in the cache server (doc/cache.md "Storage"), against `runnerctl cache serve`:
- under --max-size 1M, four entries of 300 KiB: after the fourth commit the committed bytes are
  back under the cap, and the one evicted is the least recently used (the first entry was
  looked up again, so the second goes), not simply the oldest; its blob file is gone;
- a reservation never committed expires after --reserve-ttl: its part file is removed, its
  id answers 404, and its key can be reserved again;
- an entry unused for --max-age is evicted;
- a reserve announcing more than the cap is 400 with the toolkit's "over the cap" message; a
  chunk past the cap is 413.
Without the touch on lookup the first entry would be evicted instead; without the cap nothing
would be."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolkit_client as tk  # noqa: E402


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def main():
    t = tk.Checks()
    tmp = tempfile.mkdtemp(prefix="cache-evict-")
    ver = tk.cache_version(["dist"])
    srv = tk.Server(tmp, max_size="1M", extra=["--reserve-ttl", "2"]).start()
    blobs = os.path.join(srv.dir, "blobs")
    parts = os.path.join(srv.dir, "parts")
    try:
        cl = srv.client("o/r", "refs/heads/main")
        ids = {}
        for n in (1, 2, 3):
            ids[n], r = cl.save("e%d" % n, ver, bytes([n]) * (300 << 10))
            t.check("save e%d" % n, r.status // 100 == 2, r.status)
        e, body = cl.restore(["e1"], ver)
        t.check("e1 is used again (it becomes the most recent)", body is not None)
        ids[4], r = cl.save("e4", ver, b"\x04" * (300 << 10))
        t.check("save e4 (over the cap)", r.status // 100 == 2, r.status)
        present = {n: cl.get_cache_entry(["e%d" % n], ver).status == 200 for n in ids}
        t.check("the least recently used (e2) was evicted, the rest kept",
                present == {1: True, 2: False, 3: True, 4: True}, present)
        t.check("its blob is gone", not os.path.exists(os.path.join(blobs, str(ids[2]))),
                os.listdir(blobs))
        t.check("the blobs fit the cap", dir_bytes(blobs) <= 1 << 20, dir_bytes(blobs))

        r = cl.reserve("big", ver, 2 << 20)
        t.check("reserving more than the cap: 400 saying so",
                r.status == 400 and b"cap" in r.body, (r.status, r.body))
        r = cl.reserve("unsized", ver)
        uid = r.json()["cacheId"]
        r = cl.upload_chunk(uid, b"z", 0, content_range="bytes %d-%d/*" % (1 << 20, 1 << 20))
        t.check("a chunk past the cap: 413", r.status == 413, (r.status, r.body))

        r = cl.reserve("abandoned", ver, 10)
        aid = r.json()["cacheId"]
        r = cl.upload_chunk(aid, b"01234", 0)
        t.check("a chunk of the abandoned upload is stored", r.status // 100 == 2, r.status)
        t.check("its part exists", os.path.exists(os.path.join(parts, str(aid))))
        r = cl.reserve("blocker", ver)
        t.check("a reservation that will be abandoned", r.status == 200, r.status)
        r = cl.reserve("blocker", ver)
        t.check("while it lives, the key is busy (409)", r.status == 409, r.status)
        time.sleep(3)
        r = cl.reserve("blocker", ver)
        t.check("once it expired, the key can be reserved (no commit in between)",
                r.status == 200, (r.status, r.body))
        cid, r = cl.save("trigger", ver, b"t")  # a commit runs the eviction
        t.check("another save commits", r.status // 100 == 2, r.status)
        t.check("the expired reservation's part is removed",
                not os.path.exists(os.path.join(parts, str(aid))), os.listdir(parts))
        r = cl.upload_chunk(aid, b"56789", 5)
        t.check("the expired reservation is 404", r.status == 404, r.status)
        r = cl.reserve("abandoned", ver, 10)
        t.check("its key can be reserved again", r.status == 200, (r.status, r.body))
    finally:
        srv.stop()

    tmp2 = tempfile.mkdtemp(prefix="cache-evict-age-")
    srv = tk.Server(tmp2, extra=["--max-age", "2"]).start()
    try:
        cl = srv.client("o/r", "refs/heads/main")
        cid, r = cl.save("old", ver, b"old")
        t.check("save old", r.status // 100 == 2, r.status)
        time.sleep(3.2)
        cid, r = cl.save("new", ver, b"new")
        t.check("save new", r.status // 100 == 2, r.status)
        t.check("an entry unused for --max-age is evicted",
                cl.get_cache_entry(["old"], ver).status == 204)
        t.check("a fresh one is kept", cl.get_cache_entry(["new"], ver).status == 200)
    finally:
        srv.stop()
    log = srv.logtext()
    return t.finish(log, tmp, tmp2)


if __name__ == "__main__":
    sys.exit(main())
