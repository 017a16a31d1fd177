#!/usr/bin/env python3
"""fake-dockerd.py SOCKET: answers the attach hijack on a unix socket with scripted, sometimes
hostile, streams so test-docker can check the frame parser against bad peers. The container id
in the request path picks the script:
  split    stdout "hello ", stderr "warn", stdout "world\\n", sent one byte at a time, then EOF
  badtype  a frame of type 7
  trunc    half a frame, then EOF
  huge     a frame header announcing 2 GiB
  syserr   a type-3 (daemon error) frame "boom"
  garbage  a response that is not HTTP
  echo     101, then echoes stdin back as stdout frames until the client half-closes
Prints "ready" once listening."""
import os
import socket
import struct
import sys
import threading
import time


def frame(t, data):
    return struct.pack(">BxxxI", t, len(data)) + data


def handle(c):
    req = b""
    while b"\r\n\r\n" not in req:
        d = c.recv(4096)
        if not d:
            return
        req += d
    path = req.split(b" ")[1].decode()
    mode = path.split("/containers/")[1].split("/")[0]
    if mode == "garbage":
        c.sendall(b"SSH-2.0-nope\r\n\r\n")
        c.close()
        return
    c.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    if mode == "split":
        data = frame(1, b"hello ") + frame(2, b"warn") + frame(1, b"world\n")
        for i in range(len(data)):
            c.sendall(data[i:i + 1])
            time.sleep(0.002)
    elif mode == "badtype":
        c.sendall(frame(1, b"ok\n") + frame(7, b"x"))
        time.sleep(0.5)
    elif mode == "trunc":
        c.sendall(frame(1, b"abcdef")[:10])
    elif mode == "huge":
        c.sendall(struct.pack(">BxxxI", 1, 0x7FFFFFFF) + b"x" * 100)
        time.sleep(0.5)
    elif mode == "syserr":
        c.sendall(frame(3, b"boom"))
        time.sleep(0.5)
    elif mode == "echo":
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(frame(1, d))
    c.close()


path = sys.argv[1]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
sys.stdout.write("ready\n")
sys.stdout.flush()
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the test stops reading after "ready"
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
