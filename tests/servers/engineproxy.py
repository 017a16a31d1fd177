#!/usr/bin/env python3
"""engineproxy.py LISTEN UPSTREAM FILE [grant|refuse|stall]: a Docker Engine API proxy on a unix
socket. Every request goes to the real engine at UPSTREAM unchanged, except:

- grant, refuse (for the GPU tests: no GPU exists here): container creates that carry
  HostConfig.DeviceRequests have their body appended to FILE (one JSON object a line: name,
  DeviceRequests, Env, Privileged) and, in `grant` mode (the default), the DeviceRequests are
  taken out before the engine sees them — as an engine with the NVIDIA toolkit would accept
  them — so the job really runs and holds its GPUs. In `refuse` mode the engine's own refusal
  comes back.
- stall (for tests/hostile/stop.py): while the file FILE exists a request to remove a container
  (DELETE /containers/...) is never answered: an engine that hangs during a job's teardown.
- nobind (for tests/cli/exec_agentbind.py): container creates that mount a bind at
  /.runner/agent have its Source replaced with a path that does not exist, as the engine of a
  host side running in a container of its own would see it; every such create is counted as a
  line in FILE.

Responses and hijacked (attach) streams are piped through as raw bytes. Prints "ready" once
listening. pipe() is also imported by tests/hostile/faults.py's in-process proxy."""
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

LISTEN = UPSTREAM = FILE = None
MODE = "grant"
lock = threading.Lock()


def pipe(src, dst):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def read_until(c, buf, sep):
    while sep not in buf:
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(sep) + len(sep)
    return buf[:i], buf[i:]


def read_n(c, buf, n):
    while len(buf) < n:
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    return buf[:n], buf[n:]


def read_chunked(c, buf):
    body = b""
    while True:
        line, buf = read_until(c, buf, b"\r\n")
        if line is None:
            return None, buf
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            _, buf = read_until(c, buf, b"\r\n")
            return body, buf
        data, buf = read_n(c, buf, size + 2)
        if data is None:
            return None, buf
        body += data[:size]


def handle(cl):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    up.connect(UPSTREAM)
    threading.Thread(target=pipe, args=(up, cl), daemon=True).start()
    buf = b""
    try:
        while True:
            head, buf = read_until(cl, buf, b"\r\n\r\n")
            if head is None:
                break
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            hdrs = []
            length, chunked, upgrade = 0, False, False
            for h in lines[1:]:
                if not h:
                    continue
                k, _, v = h.partition(":")
                kl = k.strip().lower()
                if kl == "content-length":
                    length = int(v.strip())
                    continue
                if kl == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
                    continue
                if kl == "upgrade":
                    upgrade = True
                hdrs.append(h)
            if chunked:
                body, buf = read_chunked(cl, buf)
            else:
                body, buf = read_n(cl, buf, length)
            if body is None:
                break
            path = urllib.parse.urlparse(target).path
            if MODE == "stall" and method == "DELETE" and "/containers/" in path and os.path.exists(FILE):
                while True:  # the engine "hangs": hold the connection, answer nothing
                    time.sleep(3600)
            if MODE == "nobind" and method == "POST" and path.endswith("/containers/create") and body:
                j = json.loads(body)
                for m in (j.get("HostConfig") or {}).get("Mounts") or []:
                    if m.get("Target") == "/.runner/agent":
                        m["Source"] = "/nonexistent/runnerd-test/runner-agent"
                        with lock, open(FILE, "a") as f:
                            f.write("bind\n")
                body = json.dumps(j).encode()
            if MODE not in ("stall", "nobind") and method == "POST" and path.endswith("/containers/create") and body:
                try:
                    j = json.loads(body)
                except ValueError:
                    j = None
                hc = (j or {}).get("HostConfig") or {}
                if hc.get("DeviceRequests"):
                    q = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)
                    rec = {"name": (q.get("name") or [""])[0], "DeviceRequests": hc["DeviceRequests"],
                           "Env": j.get("Env") or [], "Privileged": bool(hc.get("Privileged"))}
                    with lock, open(FILE, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    if MODE == "grant":
                        del hc["DeviceRequests"]
                        body = json.dumps(j).encode()
            out = "\r\n".join([lines[0]] + hdrs) + "\r\n"
            if body or method in ("POST", "PUT"):
                out += "Content-Length: %d\r\n" % len(body)
            up.sendall(out.encode("latin-1") + b"\r\n" + body)
            if upgrade or path.endswith("/attach"):
                if buf:
                    up.sendall(buf)
                pipe(cl, up)
                return
    except OSError:
        pass
    finally:
        try:
            up.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main():
    global LISTEN, UPSTREAM, FILE, MODE
    LISTEN, UPSTREAM, FILE = sys.argv[1:4]
    MODE = sys.argv[4] if len(sys.argv) > 4 else "grant"
    try:
        os.unlink(LISTEN)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(LISTEN)
    s.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
