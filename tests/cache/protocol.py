#!/usr/bin/env python3
"""The cache server speaks the toolkit's protocol: `runnerctl cache serve` (a real process on a
real socket) driven by toolkit_client.py, which sends the legacy @actions/cache client's requests
header for header. A miss is 204; a save is reserve (200 {cacheId}), four 1 MiB chunks sent in
parallel and in reverse order as chunked PATCHes with Content-Range, commit {size} (2xx); a
lookup by the exact key, then by a restore-key prefix, hits (200, cacheKey, archiveLocation);
caches?key= lists the key's versions in the token's scope only; the download (no
Authorization header, as the toolkit sends it) returns the same bytes with
Content-Length; HEAD gives the length without a body; Range gives 206 and Content-Range, an
unsatisfiable one 416; keep-alive serves several requests on one connection; a second reserve
of a committed key is 409 (the toolkit warns and goes on); an entry larger than 64 KiB pieces
streams whole (the download is read in pieces, never whole); Expect: 100-continue is
answered before the body. Lookup order: for each key, exact
before prefix, newest prefix match first; a different version misses."""
import os
import random
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolkit_client as tk  # noqa: E402


def main():
    t = tk.Checks()
    tmp = tempfile.mkdtemp(prefix="cache-protocol-")
    srv = tk.Server(tmp).start()
    try:
        cl = srv.client("Owner/Repo", "refs/heads/main")
        ver = tk.cache_version(["~/.npm"])
        r = cl.get_cache_entry(["npm-linux-abc", "npm-linux-"], ver)
        t.check("a lookup before any save is 204", r.status == 204, r.status)

        data = random.Random(7).randbytes(4 << 20 | 12345)
        cid, r = cl.save("npm-linux-abc", ver, data, chunk=1 << 20)
        t.check("reserve gives a cacheId", isinstance(cid, int) and cid > 0, cid)
        t.check("parallel out-of-order chunks then commit: 2xx", r.status // 100 == 2,
                (r.status, r.body))

        r = cl.get_cache_entry(["npm-linux-abc", "npm-linux-"], ver)
        t.check("exact key: 200", r.status == 200, (r.status, r.body))
        e = r.json() or {}
        t.check("the entry names its key", e.get("cacheKey") == "npm-linux-abc", e)
        t.check("the entry has an archiveLocation on this server",
                str(e.get("archiveLocation", "")).startswith(srv.base), e)
        t.check("the entry says its scope", e.get("scope") == "refs/heads/main", e)

        d = cl.download(e["archiveLocation"])
        t.check("download without Authorization: 200", d.status == 200, d.status)
        t.check("download: the bytes saved", d.body == data, len(d.body))
        t.check("download: Content-Length", d.header("Content-Length") == str(len(data)),
                d.headers)

        h = cl.download(e["archiveLocation"], method="HEAD")
        t.check("HEAD: 200, the length, no body",
                h.status == 200 and h.header("Content-Length") == str(len(data)) and
                h.body == b"", (h.status, h.headers))
        p = cl.download(e["archiveLocation"], rng="bytes=1000-1999")
        t.check("Range: 206 with those bytes", p.status == 206 and p.body == data[1000:2000],
                (p.status, len(p.body)))
        t.check("Range: Content-Range",
                p.header("Content-Range") == "bytes 1000-1999/%d" % len(data), p.headers)
        p = cl.download(e["archiveLocation"], rng="bytes=-10")
        t.check("suffix Range: the last 10 bytes", p.status == 206 and p.body == data[-10:],
                p.status)
        p = cl.download(e["archiveLocation"], rng="bytes=%d-" % (len(data) + 5))
        t.check("a Range past the end: 416", p.status == 416, p.status)

        entry, body = cl.restore(["npm-linux-zzz", "npm-linux-"], ver)
        t.check("restore key prefix: hits the saved entry",
                entry is not None and entry["cacheKey"] == "npm-linux-abc" and body == data,
                entry)
        r = cl.get_cache_entry(["npm-linux-abc"], tk.cache_version(["other"]))
        t.check("another version: 204", r.status == 204, r.status)

        r = cl.list_caches("npm-linux-abc")
        j = r.json() or {}
        t.check("list caches?key=: the entry with its version",
                r.status == 200 and j.get("totalCount") == 1 and
                j["artifactCaches"][0]["cacheVersion"] == ver, (r.status, r.body))
        r = srv.client("other/repo", "refs/heads/main").list_caches("npm-linux-abc")
        t.check("list: another repository sees none", r.status == 200 and
                (r.json() or {}).get("totalCount") == 0, (r.status, r.body))

        r = cl.reserve("npm-linux-abc", ver, 10)
        t.check("reserving a committed key again: 409", r.status == 409, (r.status, r.body))
        t.check("the 409 says why in message",
                "exists" in ((r.json() or {}).get("message") or ""), r.body)

        # Order: a newer prefix match wins over an older one; exact beats prefix for a key;
        # the first key that matches at all wins over later keys.
        for key, payload in (("k-1", b"one"), ("k-2", b"two"), ("j-1", b"jay")):
            cid, r = cl.save(key, ver, payload)
            t.check("save %s" % key, r.status // 100 == 2, r.status)
        e1, b1 = cl.restore(["k-"], ver)
        t.check("prefix: the newest match", e1 and e1["cacheKey"] == "k-2", e1)
        e2, b2 = cl.restore(["k-1", "k-"], ver)
        t.check("exact first key before a prefix", e2 and e2["cacheKey"] == "k-1", e2)
        e3, b3 = cl.restore(["x-", "j-", "k-"], ver)
        t.check("keys in order: the first that matches", e3 and e3["cacheKey"] == "j-1", e3)
        e4, _ = cl.restore(["k-1x"], ver)
        t.check("a key is not a prefix of a shorter one", e4 is None, e4)

        # Keep-alive: several requests on one connection.
        c = cl.conn()
        statuses = [cl.get_cache_entry(["k-"], ver, conn=c).status for _ in range(5)]
        c.close()
        t.check("keep-alive: 5 lookups on one connection", statuses == [200] * 5, statuses)

        # An empty cache entry (0 bytes): reserve, commit {size: 0}, download 0 bytes.
        cid, r = cl.save("empty", ver, b"")
        t.check("an empty entry commits", r.status // 100 == 2, (r.status, r.body))
        e5, b5 = cl.restore(["empty"], ver)
        t.check("an empty entry downloads as 0 bytes", e5 is not None and b5 == b"", e5)

        # Expect: 100-continue (curl's way): the interim answer first, then the body.
        cid = cl.reserve("expect", ver, 5).json()["cacheId"]
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(("PATCH /_apis/artifactcache/caches/%d HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\nContent-Range: bytes 0-4/*\r\n"
                   "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n" % (cid, cl.token)).encode())
        first = s.recv(100)
        s.sendall(b"hello")
        rest = b""
        while b"\r\n\r\n" not in rest:
            rest += s.recv(1000)
        s.close()
        t.check("Expect: 100-continue gets 100 Continue before the body",
                first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first)
        t.check("then the chunk's 204", (first + rest).split(b"\r\n\r\n", 1)[1].startswith(
            b"HTTP/1.1 204"), first + rest)
        r = cl.commit(cid, 5)
        t.check("and it commits", r.status // 100 == 2, (r.status, r.body))

        t.check("the server is still running", srv.alive())
    finally:
        rc = srv.stop()
    t.check("SIGTERM: the server exits 0", rc == 0, rc)
    log = srv.logtext()
    return t.finish(log, tmp)


if __name__ == "__main__":
    sys.exit(main())
