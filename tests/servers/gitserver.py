#!/usr/bin/env python3
"""tests/servers/gitserver.py: a git smart-HTTP server for tests (Python stdlib only).

Serves every repository under --root through git's own git-http-backend (run as a CGI, one
process per request), on a threaded HTTP/1.1 server with keep-alive.

Authentication is HTTP basic: a repository named in --private (its first path segment, with or
without .git) needs the token as the password (any user name), else 401 with
WWW-Authenticate; the others are open. Fetching by object id is allowed
(uploadpack.allowAnySHA1InWant), as Gitea and GitHub allow it, unless --no-sha1-in-want.

Usage:
    python3 tests/servers/gitserver.py --root DIR [--port 0] [--host 127.0.0.1] [--token SECRET]
        [--private name1,name2] [--port-file F] [--log F] [--tls CERT KEY] [--no-sha1-in-want]

It prints the chosen port on stdout and, with --port-file, writes it there (atomically) once
it listens. --log appends one line per request, "METHOD PATH STATUS", written before the reply
is sent (so a client that got a reply finds its line). SIGTERM/SIGINT stop it.

As a module:
    srv = GitServer(root, token="s3cret", private=["priv"]).start()
    srv.url  # "http://127.0.0.1:PORT"
    srv.requests  # [(method, path, status), ...]
    srv.stop()
"""
import argparse
import base64
import http.server
import os
import signal
import ssl
import subprocess
import threading
import urllib.parse

BACKEND = "/usr/lib/git-core/git-http-backend"
CHUNK = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitserver/1"

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):  # quiet: the request log is srv.requests / --log
        pass

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def _record(self, status):
        self.server.owner.record(self.command, self.path, status)

    def _authorized(self):
        """Returns (ok, user) for this request's repository."""
        owner = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        first = path.lstrip("/").split("/", 1)[0]
        name = first[:-4] if first.endswith(".git") else first
        user = ""
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode("utf-8", "replace")
                u, _, p = raw.partition(":")
                if owner.token is not None and p == owner.token:
                    user = u or "token"
            except ValueError:
                pass
        if name in owner.private and not user:
            return False, ""
        return True, user

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self):
        body = self._read_body() if self.command == "POST" else b""
        ok, user = self._authorized()
        if not ok:
            msg = b"authentication required\n"
            self._record(401)  # before the reply: a client that has it sees the log line
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="gitserver"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        owner = self.server.owner
        parts = urllib.parse.urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": owner.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": owner.host,
            "SERVER_PORT": str(owner.port),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(parts.path),
            "QUERY_STRING": parts.query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if user:
            env["REMOTE_USER"] = user
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if owner.sha1_in_want:
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "uploadpack.allowAnySHA1InWant"
            env["GIT_CONFIG_VALUE_0"] = "true"
        proc = subprocess.Popen([BACKEND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)

        def feed():
            try:
                proc.stdin.write(body)
            except BrokenPipeError:
                pass
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        status, headers = 200, []
        while True:
            line = proc.stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            value = value.strip()
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))
        self._record(status)
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while True:
                data = proc.stdout.read1(CHUNK) if hasattr(proc.stdout, "read1") \
                    else proc.stdout.read(CHUNK)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            proc.stdout.close()
            proc.wait()
            writer.join()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, owner):
        self.owner = owner
        super().__init__(addr, _Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.owner.tls_context is not None:
            sock = self.owner.tls_context.wrap_socket(sock, server_side=True,
                                                      do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        pass  # a client that gives up (bad certificate, cancelled fetch) is not our error


class GitServer:
    """A git smart-HTTP server on a thread: start(), url, requests, stop()."""

    def __init__(self, root, token=None, private=(), host="127.0.0.1", port=0, tls=None,
                 log=None, sha1_in_want=True):
        self.root = os.path.abspath(root)
        self.token = token
        self.private = set(p[:-4] if p.endswith(".git") else p for p in private if p)
        self.host = host
        self.port = port
        self.log = log
        self.sha1_in_want = sha1_in_want
        self.requests = []
        self._lock = threading.Lock()
        self.tls_context = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.tls_context = ctx
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        scheme = "https" if self.tls_context else "http"
        return "%s://%s:%d" % (scheme, self.host, self.port)

    def record(self, method, path, status):
        with self._lock:
            self.requests.append((method, path, status))
            if self.log:
                with open(self.log, "a") as f:
                    f.write("%s %s %d\n" % (method, path, status))

    def count(self, method=None, contains=None):
        """How many requests matched (method and a substring of the path)."""
        with self._lock:
            return sum(1 for m, p, _ in self.requests
                       if (method is None or m == method) and (contains is None or contains in p))

    def start(self):
        self._httpd = _Server((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None


def main():
    ap = argparse.ArgumentParser(description="git smart-HTTP server for tests")
    ap.add_argument("--root", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token")
    ap.add_argument("--private", default="")
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--no-sha1-in-want", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(a.root):
        ap.error("--root %s: not a directory" % a.root)
    srv = GitServer(a.root, token=a.token, private=a.private.split(","), host=a.host,
                    port=a.port, tls=a.tls, log=a.log, sha1_in_want=not a.no_sha1_in_want)
    srv.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(srv.port, flush=True)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(tmp, a.port_file)
    while not stop.wait(1):
        pass
    srv.stop()


if __name__ == "__main__":
    main()
