#!/usr/bin/env python3
"""stallproxy.py LISTEN UPSTREAM FLAG: a Docker Engine API proxy on a unix socket that passes
every request to the real engine at UPSTREAM, except that while the file FLAG exists a request
to remove a container (DELETE /containers/...) is never answered: an engine that hangs during
a job's teardown. Hijacked (attach) streams are piped through raw. Prints "ready" once
listening. A helper of tests/hostile/stop.py, not a test."""
import os
import socket
import sys
import threading
import time
import urllib.parse

LISTEN, UPSTREAM, FLAG = sys.argv[1:4]


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


def read_body(c, buf, length, chunked):
    if not chunked:
        return read_n(c, buf, length)
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
            hdrs, length, chunked, upgrade = [], 0, False, False
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
                upgrade = upgrade or kl == "upgrade"
                hdrs.append(h)
            body, buf = read_body(cl, buf, length, chunked)
            if body is None:
                break
            path = urllib.parse.urlparse(target).path
            if method == "DELETE" and "/containers/" in path and os.path.exists(FLAG):
                while True:  # the engine "hangs": hold the connection, answer nothing
                    time.sleep(3600)
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


main()
