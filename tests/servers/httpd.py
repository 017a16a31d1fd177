#!/usr/bin/env python3
"""httpd.py: a small real HTTP server on 127.0.0.1 for test-httpc. Prints its port, then serves:
  GET  /hello          200 "hello world"
  POST /echo           200 with the request body; header X-Method echoes the method
  GET  /big?n=N        200 with N bytes of 'x'
  GET  /hang           accepts, never answers
  GET  /stream?n=N     N lines "chunk-i\\n", 50 ms apart (chunked)
  GET  /slow?ms=M      answers "slow" after M ms
  GET  /status?code=C  status C with a JSON body {"message":"status C"}
  GET  /headers        200 with the request headers as the body

With --tls DIR: HTTPS with DIR/server.pem + DIR/server-key.pem, client certificates signed by
DIR/ca.pem required.
"""
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Method", self.command)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/hello":
            self.send(200, b"hello world")
        elif u.path == "/big":
            self.send(200, b"x" * int(q["n"][0]))
        elif u.path == "/hang":
            time.sleep(3600)
        elif u.path == "/stream":
            n = int(q.get("n", ["5"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                data = b"chunk-%d\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/slow":
            time.sleep(int(q.get("ms", ["200"])[0]) / 1000.0)
            self.send(200, b"slow")
        elif u.path == "/status":
            c = int(q["code"][0])
            self.send(c, b'{"message":"status %d"}' % c, "application/json")
        elif u.path == "/headers":
            self.send(200, str(self.headers).encode())
        else:
            self.send(404, b"no such path")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        self.send(200, body)

    do_PUT = do_POST
    do_DELETE = do_GET


ThreadingHTTPServer.request_queue_size = 256  # many concurrent connects in tests
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
if len(sys.argv) == 3 and sys.argv[1] == "--tls":
    d = sys.argv[2]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/server.pem", d + "/server-key.pem")
    ctx.load_verify_locations(d + "/ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.daemon_threads = True
srv.handle_error = lambda *a: None  # clients that hang up early are expected
print(srv.server_address[1], flush=True)
srv.serve_forever()
