#!/usr/bin/env python3
"""bench/cache/client.py: the benchmark's actions/cache client, run as a step of a host job
(the job's ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN), making the requests @actions/cache's
legacy client makes: look up by key and version, reserve, PATCH chunks with Content-Range,
commit with the size; restore streams the archive's download into `tar x`.

  client.py save KEY DIR      tar of DIR, saved; prints "save_s=S bytes=N"
  client.py restore KEY DIR   prints "restore_s=S bytes=N" (DIR filled), or "miss"
"""
import fcntl
import http.client
import json
import socket
import os
import subprocess
import sys
import time
import urllib.parse

VERSION = "bench-tar-1"
CHUNK = 32 << 20


def conn():
    u = urllib.parse.urlsplit(os.environ["ACTIONS_CACHE_URL"])
    return http.client.HTTPConnection(u.hostname, u.port, timeout=300), u.path


def call(c, method, path, body=None, headers=None):
    h = {"Accept": "application/json;api-version=6.0-preview.1",
         "Authorization": "Bearer " + os.environ["ACTIONS_RUNTIME_TOKEN"]}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    return c.getresponse()


def fail(what, r):
    sys.exit("%s: HTTP %d %s" % (what, r.status, r.read(300)))


def save(key, src):
    t0 = time.monotonic()
    c, base = conn()
    tar = subprocess.Popen(["tar", "cf", "-", "-C", src, "."], stdout=subprocess.PIPE)
    data = tar.stdout.read()
    tar.wait()
    js = {"Content-Type": "application/json"}
    r = call(c, "POST", base + "_apis/artifactcache/caches",
             json.dumps({"key": key, "version": VERSION, "cacheSize": len(data)}), js)
    if r.status not in (200, 201):
        fail("reserve", r)
    cid = json.loads(r.read())["cacheId"]
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        end = min(start + CHUNK, len(data)) - 1
        r = call(c, "PATCH", base + "_apis/artifactcache/caches/%s" % cid, view[start:end + 1],
                 {"Content-Type": "application/octet-stream",
                  "Content-Range": "bytes %d-%d/*" % (start, end)})
        r.read()
        if not 200 <= r.status < 300:
            fail("upload", r)
    r = call(c, "POST", base + "_apis/artifactcache/caches/%s" % cid,
             json.dumps({"size": len(data)}), js)
    r.read()
    if not 200 <= r.status < 300:
        fail("commit", r)
    print("save_s=%.3f bytes=%d" % (time.monotonic() - t0, len(data)), flush=True)


def download_into_tar(loc, dest):
    """GETs loc and streams the body into `tar x -C dest`: the bytes go from the socket to
    tar's stdin with splice(2) (no copy through Python), after what came with the headers.
    Returns the body's length."""
    sock = socket.create_connection((loc.hostname, loc.port), timeout=300)
    sock.settimeout(None)  # blocking, for splice
    path = loc.path + ("?" + loc.query if loc.query else "")
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
                  "Authorization: Bearer %s\r\n\r\n"
                  % (path, loc.hostname, loc.port, os.environ["ACTIONS_RUNTIME_TOKEN"])).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = sock.recv(65536)
        if not b:
            sys.exit("download: the connection closed in the headers")
        head += b
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split()[1] != "200":
        sys.exit("download: " + lines[0])
    size = None
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            size = int(v)
        if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
            sys.exit("download: chunked replies are not handled by this client")
    if size is None:
        sys.exit("download: no Content-Length")
    os.makedirs(dest, exist_ok=True)
    tar = subprocess.Popen(["tar", "xf", "-", "-C", dest], stdin=subprocess.PIPE, bufsize=0)
    try:  # a 1 MiB pipe: fewer switches between the kernel's copy and tar (F_SETPIPE_SZ)
        fcntl.fcntl(tar.stdin.fileno(), 1031, 1 << 20)
    except OSError:
        pass
    tar.stdin.write(rest)
    n = len(rest)
    while n < size:
        k = os.splice(sock.fileno(), tar.stdin.fileno(), min(1 << 20, size - n))
        if k == 0:
            sys.exit("download: the connection closed after %d of %d bytes" % (n, size))
        n += k
    tar.stdin.close()
    sock.close()
    if tar.wait() != 0:
        sys.exit("tar x failed")
    return n


def restore(key, dest):
    t0 = time.monotonic()
    c, base = conn()
    r = call(c, "GET", base + "_apis/artifactcache/cache?keys=%s&version=%s"
             % (urllib.parse.quote(key), VERSION))
    if r.status == 204:
        r.read()
        print("miss", flush=True)
        return
    if r.status != 200:
        fail("lookup", r)
    loc = urllib.parse.urlsplit(json.loads(r.read())["archiveLocation"])
    n = download_into_tar(loc, dest)
    print("restore_s=%.3f bytes=%d" % (time.monotonic() - t0, n), flush=True)


if __name__ == "__main__":
    cmd, key, path = sys.argv[1:4]
    (save if cmd == "save" else restore)(key, path)
