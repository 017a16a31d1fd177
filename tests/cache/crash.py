#!/usr/bin/env python3
"""Crash safety of the cache server (doc/cache.md "Storage"): `runnerctl cache serve` is killed
with SIGKILL while a chunk's body is half sent (its part file on disk, its reservation in the
index). After a restart on the same directory and database: the half upload is not visible
(lookups miss, its reservation id is 404), its part file is gone, the entry committed before the
crash is intact (same bytes), a blob no entry names (a crash between the rename and the commit)
is removed, and an entry whose blob was lost is dropped instead of served short. The key can be
saved again after the crash."""
import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolkit_client as tk  # noqa: E402


def main():
    t = tk.Checks()
    tmp = tempfile.mkdtemp(prefix="cache-crash-")
    srv = tk.Server(tmp).start()
    ver = tk.cache_version(["target"])
    parts = os.path.join(srv.dir, "parts")
    blobs = os.path.join(srv.dir, "blobs")
    token = srv.token("o/r", "refs/heads/main")
    cl = tk.Client(srv.base, token)
    kept = b"committed before the crash" * 1000
    cid, r = cl.save("kept", ver, kept)
    t.check("an entry is committed before the crash", r.status // 100 == 2, r.status)
    cid_lost, r = cl.save("lost-blob", ver, b"its blob goes missing")
    t.check("a second entry is committed", r.status // 100 == 2, r.status)

    r = cl.reserve("half", ver, 2 << 20)
    hid = (r.json() or {}).get("cacheId")
    t.check("a reservation for the half upload", r.status == 200 and hid, r.body)
    r = cl.upload_chunk(hid, b"a" * (1 << 20), 0)
    t.check("its first chunk is stored", r.status // 100 == 2, r.status)
    # The second chunk: headers and half its body, then the server dies.
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(("PATCH /_apis/artifactcache/caches/%d HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\nContent-Type: application/octet-stream\r\n"
               "Content-Range: bytes %d-%d/*\r\nContent-Length: %d\r\n\r\n"
               % (hid, token, 1 << 20, (2 << 20) - 1, 1 << 20)).encode())
    s.sendall(b"b" * (512 << 10))
    part = os.path.join(parts, str(hid))
    t.check("the part file holds the bytes sent so far",
            t.wait_for(lambda: os.path.exists(part) and os.path.getsize(part) >= (1 << 20) +
                       (256 << 10)), os.path.getsize(part) if os.path.exists(part) else None)
    srv.kill9()
    s.close()
    t.check("after SIGKILL the part file is still there (the crash left it)",
            os.path.exists(part))
    with open(os.path.join(blobs, "999999"), "wb") as f:
        f.write(b"orphan: renamed but never committed")
    os.unlink(os.path.join(blobs, str(cid_lost)))

    srv2 = tk.Server(tmp).start()
    try:
        cl2 = tk.Client(srv2.base, token)
        r = cl2.get_cache_entry(["half"], ver)
        t.check("the half upload is not visible after restart", r.status == 204, r.status)
        t.check("its part file was removed", not os.path.exists(part), os.listdir(parts))
        t.check("no part file is left", os.listdir(parts) == [], os.listdir(parts))
        r = cl2.upload_chunk(hid, b"c", 0)
        t.check("its reservation is gone (404)", r.status == 404, r.status)
        e, body = cl2.restore(["kept"], ver)
        t.check("the committed entry survives intact", body == kept, e)
        t.check("the orphan blob was removed", not os.path.exists(os.path.join(blobs, "999999")),
                os.listdir(blobs))
        r = cl2.get_cache_entry(["lost-blob"], ver)
        t.check("an entry without its blob is dropped (miss, not a short download)",
                r.status == 204, (r.status, r.body))
        data = b"x" * 3000
        cid, r = cl2.save("half", ver, data)
        t.check("the key can be saved again", r.status // 100 == 2, r.status)
        e, body = cl2.restore(["half"], ver)
        t.check("and restored", body == data, e)
    finally:
        srv2.stop()
    log = srv.logtext()
    t.check("the restart logged the orphans it removed", "removing orphan" in log, log[-1500:])
    return t.finish(log, tmp)


if __name__ == "__main__":
    sys.exit(main())
