"""A stdlib client of the cache server that sends what @actions/cache's legacy client
(cacheHttpClient.ts on @actions/http-client) sends, header for header:

  lookup    GET  {base}_apis/artifactcache/cache?keys=<encodeURIComponent(keys.join(','))>
                 &version=<hex>
            Accept: application/json;api-version=6.0-preview.1, Authorization: Bearer TOKEN,
            User-Agent: actions/cache
  reserve   POST {base}_apis/artifactcache/caches, JSON.stringify(body, null, 2) with
            Content-Type: application/json and the same Accept/Authorization/User-Agent
  upload    PATCH {base}_apis/artifactcache/caches/ID, the chunk as a Node stream (so
            Transfer-Encoding: chunked, no Content-Length), Content-Type:
            application/octet-stream, Content-Range: bytes START-END/* (END inclusive); four
            chunks of 32 MiB in flight at once, so they arrive in any order
  commit    POST {base}_apis/artifactcache/caches/ID {"size": N}
  list      GET  {base}_apis/artifactcache/caches?key=<encodeURIComponent(key)> (after a miss,
            in debug mode: which versions of the key exist)
  download  GET archiveLocation with only User-Agent: actions/cache (no Authorization: the
            toolkit's download client has no credential handler); the concurrent downloader
            first sends HEAD, then GETs with Range: bytes=A-B

Also the helpers the tests share: starting `runnerctl cache serve` (a real process on a real
socket) and minting tokens with `runnerctl cache token`. Not a test itself."""
import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

RUNNERCTL = os.environ.get("RUNNERCTL", "runnerctl")
ACCEPT = "application/json;api-version=6.0-preview.1"
UA = "actions/cache"


def cache_version(paths, compression="zstd"):
    """getCacheVersion(): sha256 of the paths, the compression method and the salt."""
    parts = list(paths) + ([compression] if compression and compression != "gzip" else [])
    parts.append("1.0")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Client:
    """One job's client: base is ACTIONS_CACHE_URL (ending in /), token ACTIONS_RUNTIME_TOKEN."""

    def __init__(self, base, token, timeout=60):
        self.base = base
        self.token = token
        self.timeout = timeout
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.prefix = u.path

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def api_headers(self):
        h = {"Accept": ACCEPT, "User-Agent": UA}
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        return h

    def request(self, method, path, body=None, headers=None, conn=None, chunked=False):
        c = conn or self.conn()
        try:
            if chunked:
                c.putrequest(method, path)
                for k, v in headers.items():
                    c.putheader(k, v)
                c.putheader("Transfer-Encoding", "chunked")
                c.endheaders()
                data = body if isinstance(body, (bytes, bytearray)) else b""
                step = 64 * 1024  # a Node read stream's highWaterMark
                for off in range(0, len(data), step):
                    piece = data[off:off + step]
                    c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                c.send(b"0\r\n\r\n")
            else:
                c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            if conn is None:
                c.close()

    def url(self, resource):
        return self.prefix + "_apis/artifactcache/" + resource

    # The toolkit's calls -------------------------------------------------------------------

    def get_cache_entry(self, keys, version, conn=None):
        res = "cache?keys=%s&version=%s" % (urllib.parse.quote(",".join(keys), safe="-_.!~*'()"),
                                            version)
        return self.request("GET", self.url(res), headers=self.api_headers(), conn=conn)

    def list_caches(self, key):
        """printCachesListForDiagnostics(): after a miss, in debug mode."""
        res = "caches?key=%s" % urllib.parse.quote(key, safe="-_.!~*'()")
        return self.request("GET", self.url(res), headers=self.api_headers())

    def reserve(self, key, version, size=None):
        body = {"key": key, "version": version}
        if size is not None:
            body["cacheSize"] = size
        h = self.api_headers()
        h["Content-Type"] = "application/json"
        return self.request("POST", self.url("caches"), json.dumps(body, indent=2).encode(), h)

    def upload_chunk(self, cache_id, data, start, conn=None, content_range=None):
        h = self.api_headers()
        h["Content-Type"] = "application/octet-stream"
        h["Content-Range"] = (content_range if content_range is not None else
                              "bytes %d-%d/*" % (start, start + len(data) - 1))
        return self.request("PATCH", self.url("caches/%s" % cache_id), data, h, conn=conn,
                            chunked=True)

    def commit(self, cache_id, size):
        h = self.api_headers()
        h["Content-Type"] = "application/json"
        return self.request("POST", self.url("caches/%s" % cache_id),
                            json.dumps({"size": size}, indent=2).encode(), h)

    def upload_file(self, cache_id, data, chunk=32 << 20, concurrency=4):
        """uploadFile(): `concurrency` workers take the next chunk each; returns the statuses."""
        offsets = list(range(0, len(data), chunk))
        # Workers race for chunks in the toolkit; here the order is reversed on purpose so the
        # server surely sees them out of order.
        offsets.reverse()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
            futs = [ex.submit(self.upload_chunk, cache_id, data[o:o + chunk], o) for o in offsets]
            return [f.result().status for f in futs]

    def save(self, key, version, data, chunk=32 << 20, concurrency=4):
        """saveCache(): reserve, upload, commit. Returns (cacheId or None, last response)."""
        r = self.reserve(key, version, len(data))
        if r.status != 200:
            return None, r
        cid = r.json()["cacheId"]
        statuses = self.upload_file(cid, data, chunk, concurrency)
        if any(s // 100 != 2 for s in statuses):
            return cid, Response(max(statuses), [], b"")
        return cid, self.commit(cid, len(data))

    def download(self, location, rng=None, method="GET"):
        """downloadCacheHttpClient(): a GET of archiveLocation with only the User-Agent."""
        u = urllib.parse.urlsplit(location)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=self.timeout)
        h = {"User-Agent": UA}
        if rng:
            h["Range"] = rng
        path = u.path + ("?" + u.query if u.query else "")
        try:
            return self.request(method, path, headers=h, conn=c)
        finally:
            c.close()

    def restore(self, keys, version):
        """restoreCache(): lookup then download; (entry JSON, bytes) or (None, None)."""
        r = self.get_cache_entry(keys, version)
        if r.status == 204:
            return None, None
        assert r.status == 200, (r.status, r.body)
        entry = r.json()
        d = self.download(entry["archiveLocation"])
        assert d.status == 200, (d.status, d.body)
        assert int(d.header("Content-Length")) == len(d.body)
        return entry, d.body


class Server:
    """`runnerctl cache serve` on 127.0.0.1 with a port the kernel picks."""

    def __init__(self, tmp, max_size=None, extra=(), key_file=None, dir=None):
        self.tmp = tmp
        self.dir = dir or os.path.join(tmp, "cache")
        self.key_file = key_file or os.path.join(tmp, "cache.key")
        self.max_size = max_size
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.log = os.path.join(tmp, "serve.log")

    def start(self, port=0):
        args = [RUNNERCTL, "cache", "serve", "--listen", "127.0.0.1:%d" % port, "--dir", self.dir,
                "--key-file", self.key_file, "-v"] + self.extra
        if self.max_size:
            args += ["--max-size", str(self.max_size)]
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening port="):
            self.proc.wait(10)
            raise RuntimeError("serve did not start: %r\n%s" % (line, open(self.log).read()))
        self.port = int(line.split("=")[1])
        self.base = "http://127.0.0.1:%d/" % self.port
        return self

    def token(self, repo, ref, default_ref=None, ttl=3600, key_file=None):
        args = [RUNNERCTL, "cache", "token", "--key-file", key_file or self.key_file, "--repo",
                repo, "--ref", ref, "--ttl", str(ttl)]
        if default_ref:
            args += ["--default-ref", default_ref]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def client(self, repo, ref, default_ref=None, **kw):
        return Client(self.base, self.token(repo, ref, default_ref), **kw)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(30)
            self.proc.stdout.close()
            self.logf.close()
            return rc
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc.stdout.close()
        self.logf.close()

    def alive(self):
        return self.proc.poll() is None

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Checks:
    def __init__(self):
        self.failures = 0

    def check(self, name, cond, detail=""):
        if cond:
            print("ok   " + name)
        else:
            self.failures += 1
            print("FAIL " + name + (": " + str(detail)[:500] if detail else ""))
        return cond

    def wait_for(self, cond, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def finish(self, log, *dirs, tail=2000):
        """A test's end: checks that the server's log has no sanitizer report (showing its last
        tail characters if it has), prints the number of failures and removes dirs unless a
        check failed (they are kept for a look then). Returns the test's exit status."""
        self.check("no sanitizer report", "runtime error" not in log and "Sanitizer" not in log,
                   log[-tail:])
        print("%d failed" % self.failures)
        if not self.failures:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
        return 1 if self.failures else 0
