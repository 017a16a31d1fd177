#!/usr/bin/env python3
"""Hostile input to the cache server (`runnerctl cache serve`): every case gets a clear 4xx (or
the connection is refused), never a crash, a hang or a file outside the cache's directory:
huge, negative, reversed and garbage Content-Ranges; overlapping chunks (an identical retry is
fine); bodies longer or shorter than their range; a Content-Length that disagrees; negative
cacheSize and commit size; a commit with a gap; keys holding "/" and ".." (stored by id, so
harmless); a 1 MB key in the URL (431) and in a reserve body (413); too many keys, empty keys,
an encoded NUL; broken JSON and broken HTTP; unknown paths and methods; clients that reset the
connection in the middle of a download or stop reading; a chunk cut off by a reset and retried at once; a flood of reservations (429 past 64 per
repository, others unaffected); 300 connections at once.
At the end the server still answers, and its log has no sanitizer report."""
import os
import socket
import struct
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolkit_client as tk  # noqa: E402


def raw(port, data, read=65536):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(read)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def main():
    t = tk.Checks()
    tmp = tempfile.mkdtemp(prefix="cache-hostile-")
    srv = tk.Server(tmp, max_size="64M").start()
    ver = tk.cache_version(["x"])
    try:
        cl = srv.client("o/r", "refs/heads/main")
        tok = cl.token
        cid = cl.reserve("k", ver).json()["cacheId"]

        for cr, want in (("bytes 0-999999999999999/*", 413), ("bytes 0-99999999999999999999/*", 400),
                         ("bytes -5-10/*", 400), ("bytes 10-5/*", 400), ("bytes 0-9", 400),
                         ("bytes=0-9/*", 400), ("bytes 0-9/5", 400), ("items 0-9/*", 400),
                         ("bytes 0x0-9/*", 400), ("bytes  0-9/*", 400), ("", 400)):
            r = cl.upload_chunk(cid, b"0123456789", 0, content_range=cr)
            t.check("Content-Range %r: %d" % (cr, want), r.status == want, (r.status, r.body))
        r = cl.upload_chunk(cid, b"0123456789", 0, content_range="bytes 0-%d/*" % (65 << 20))
        t.check("a chunk larger than 64 MiB: 413 before its body", r.status == 413, r.status)

        r = cl.upload_chunk(cid, b"a" * 100, 0)
        t.check("chunk 0-99", r.status // 100 == 2, r.status)
        r = cl.upload_chunk(cid, b"b" * 100, 50)
        t.check("an overlapping chunk 50-149: 400", r.status == 400 and b"overlap" in r.body,
                (r.status, r.body))
        r = cl.upload_chunk(cid, b"a" * 100, 0)
        t.check("an identical retry of 0-99 is accepted", r.status // 100 == 2, r.status)
        r = cl.upload_chunk(cid, b"c" * 150, 100, content_range="bytes 100-199/*")
        t.check("a body longer than its range: 400", r.status == 400, (r.status, r.body))
        r = cl.upload_chunk(cid, b"c" * 50, 100, content_range="bytes 100-199/*")
        t.check("a body shorter than its range: 400", r.status == 400, (r.status, r.body))
        resp = raw(srv.port, ("PATCH /_apis/artifactcache/caches/%d HTTP/1.1\r\nHost: x\r\n"
                              "Authorization: Bearer %s\r\nContent-Range: bytes 100-199/*\r\n"
                              "Content-Length: 5\r\n\r\nhello" % (cid, tok)).encode())
        t.check("Content-Length disagreeing with the range: 400", status_of(resp) == 400, resp[:200])
        r = cl.commit(cid, 200)
        t.check("a commit with a gap (100-199 missing): 400", r.status == 400 and
                b"cover" in r.body, (r.status, r.body))
        r = cl.commit(cid, -1)
        t.check("a negative commit size: 400", r.status == 400, r.status)
        r = cl.commit(cid, 100)
        t.check("the commit of what was sent works", r.status // 100 == 2, (r.status, r.body))
        e, body = cl.restore(["k"], ver)
        t.check("and it holds the first upload, not the refused ones", body == b"a" * 100, body)

        r = cl.reserve("neg", ver, -5)
        t.check("a negative cacheSize: 400", r.status == 400, r.status)
        for key in ("../../../../etc/passwd", "a/b/../c", "/", "..", "%2e%2e", "k\u00e9y"):
            cid2, r = cl.save(key, ver, key.encode())
            e, body = cl.restore([key], ver)
            t.check("key %r is stored and found as a key" % key,
                    r.status // 100 == 2 and body == key.encode(), (r.status, e))
        t.check("no file appeared outside the cache directory",
                sorted(os.listdir(tmp)) == ["cache", "cache.key", "serve.log"],
                os.listdir(tmp))
        t.check("the blobs are named by id only",
                all(n.isdigit() for n in os.listdir(os.path.join(srv.dir, "blobs"))),
                os.listdir(os.path.join(srv.dir, "blobs")))

        r = cl.get_cache_entry(["x" * (1 << 20)], ver)
        t.check("a 1 MB key in the URL: 431", r.status == 431, r.status)
        r = cl.reserve("x" * (1 << 20), ver)
        t.check("a 1 MB key in a reserve body: 413", r.status == 413, r.status)
        r = cl.reserve("x" * 513, ver)
        t.check("a 513-byte key: 400", r.status == 400, r.status)
        r = cl.reserve("a,b", ver)
        t.check("a key with a comma: 400", r.status == 400, r.status)
        r = cl.get_cache_entry(["k%d" % i for i in range(11)], ver)
        t.check("11 keys: 400", r.status == 400, r.status)
        r = cl.get_cache_entry(["a", "", "b"], ver)
        t.check("an empty key: 400", r.status == 400, r.status)
        r = cl.request("GET", cl.url("cache?keys=a%00b&version=" + ver), headers=cl.api_headers())
        t.check("an encoded NUL: 400", r.status == 400, r.status)
        r = cl.request("GET", cl.url("cache?keys=a"), headers=cl.api_headers())
        t.check("no version: 400", r.status == 400, r.status)
        h = cl.api_headers()
        h["Content-Type"] = "application/json"
        for body in (b"{", b"[]", b'{"key": 5, "version": "v"}', b'{"key":"a","key":"b"}',
                     b'{"key":"a\\u0000b","version":"v"}', b"\xff\xfe"):
            r = cl.request("POST", cl.url("caches"), body, h)
            t.check("reserve body %r: 400" % body[:30], r.status == 400, (r.status, r.body))
        cid3 = cl.reserve("k3", ver).json()["cacheId"]
        r = cl.request("POST", cl.url("caches/%d" % cid3), b'{"size": "big"}', h)
        t.check("commit body with a string size: 400", r.status == 400, r.status)
        for path in ("caches/0", "caches/-1", "caches/abc", "caches/99999999999999999999"):
            r = cl.upload_chunk(path.split("/")[1], b"z", 0)
            t.check("PATCH %s: 400 or 404" % path, r.status in (400, 404), r.status)

        r = cl.request("GET", "/_apis/other", headers=cl.api_headers())
        t.check("an unknown path: 404", r.status == 404, r.status)
        r = cl.request("DELETE", cl.url("caches"), headers=cl.api_headers())
        t.check("DELETE caches: 405", r.status == 405, r.status)
        resp = raw(srv.port, b"GARBAGE\r\n\r\n")
        t.check("broken HTTP: 400", status_of(resp) == 400, resp[:100])
        resp = raw(srv.port, b"GET /_apis/artifactcache/cache HTTP/1.1\r\nX: " + b"a" * 20000 +
                   b"\r\n\r\n")
        t.check("a 20 KB header: 431", status_of(resp) == 431, resp[:100])

        # A client that goes away in the middle of a download (the server's next write hits a
        # closed socket: EPIPE, which must not be a fatal SIGPIPE), and one that stops reading.
        big = os.urandom(8 << 20)
        cid4, r = cl.save("big", ver, big)
        loc = cl.get_cache_entry(["big"], ver).json()["archiveLocation"]
        u = urllib.parse.urlsplit(loc)
        for i in range(6):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\n\r\n" % (u.path, u.query)).encode())
            s.recv(1000)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a close (or a reset), with most of the body unsent
            time.sleep(0.2)
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        stalled.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\n\r\n" % (u.path, u.query)).encode())
        d = cl.download(loc)
        t.check("downloads go on after clients vanished mid-body, and beside a stalled one",
                d.status == 200 and d.body == big, d.status)
        stalled.close()
        t.check("the server survived them", srv.alive())

        # A chunk cut off by a reset, retried at once, then committed: the bytes restored are
        # the retry's, whatever the cut-off write was doing when its connection went.
        good = True
        for i in range(10):
            rid = cl.reserve("retry-%d" % i, ver, 1 << 20).json()["cacheId"]
            payload = bytes([i + 1]) * (1 << 20)
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(("PATCH /_apis/artifactcache/caches/%d HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Range: bytes 0-%d/*\r\n"
                       "Content-Length: %d\r\n\r\n" % (rid, tok, (1 << 20) - 1, 1 << 20)
                       ).encode() + b"\xee" * (700 << 10))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            for _ in range(50):  # 409 while the cut-off write is still landing
                r = cl.upload_chunk(rid, payload, 0)
                if r.status != 409:
                    break
                time.sleep(0.02)
            rc = cl.commit(rid, 1 << 20).status
            e, body = cl.restore(["retry-%d" % i], ver)
            good = good and r.status == 204 and rc == 204 and body == payload
        t.check("a chunk cut off then retried restores the retry's bytes (10 times)", good)

        # Reservations nobody uploads to: at most 64 per repository live at once.
        statuses = [cl.reserve("flood-%d" % i, ver).status for i in range(70)]
        t.check("a reservation flood: 429 past the per-repository limit",
                statuses.count(429) > 0 and statuses[:60] == [200] * 60, statuses)
        r = srv.client("o/other", "refs/heads/main").reserve("flood-0", ver)
        t.check("another repository can still reserve", r.status == 200, r.status)

        socks = []
        for _ in range(300):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        t.check("300 connections opened (the extra ones closed by the server)", len(socks) > 0)
        for s in socks:
            s.close()

        def answers():
            try:
                return cl.get_cache_entry(["k"], ver).status == 200
            except OSError:
                return False  # refused while the server has not seen those closes yet
        t.check("the server answers again once those are closed", t.wait_for(answers, 20))
        t.check("the server is still running", srv.alive())
    finally:
        srv.stop()
    log = srv.logtext()
    return t.finish(log, tmp, tail=3000)


if __name__ == "__main__":
    sys.exit(main())
