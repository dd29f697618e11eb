#!/usr/bin/env python3
"""A file server for TR-143 throughput tests: GET /file?size=N answers N
bytes (with Content-Length); with &together=K, no answer starts before K
requests came, and none sends its second half before all K sent their
first (so that, with socket buffers smaller than half the file, K
connections are being read at once); PUT reads the
body and answers 201, then prints "PUT <bytes>" on stdout. Listens on
127.0.0.1:PORT (argv[1]) and says READY once it does.

Usage: http_sink.py PORT
"""

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CHUNK = b"\x5a" * 65536
BARRIERS = {}
LOCK = threading.Lock()


def together(k):
    with LOCK:
        barrier = BARRIERS.setdefault(k, threading.Barrier(k))
    barrier.wait(timeout=30)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        size = int(query.get("size", ["0"])[0])
        k = int(query.get("together", ["0"])[0])
        if k:
            together(k)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.send(size // 2)
        if k:
            together(k)
        self.send(size - size // 2)

    def send(self, size):
        left = size
        while left > 0:
            piece = CHUNK[: min(left, len(CHUNK))]
            self.wfile.write(piece)
            left -= len(piece)

    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        received = 0
        while left > 0:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                break
            received += len(piece)
            left -= len(piece)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(f"PUT {received}", flush=True)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
