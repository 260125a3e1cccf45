#!/usr/bin/env python3
"""A local webhook sink for the interop tests: records every request as a JSON line.

Usage: webhook_sink.py PORT LOGFILE [ADDR]   (binds ADDR, default 127.0.0.1; runs inside the
test's namespace)

Paths choose the reply:
  /ok/...          204
  /fail/...        500
  /slow/...        sleeps 3 s, then 204
  /ratelimit/...   first request per path: 429 with Retry-After: 1; later ones: 204
  /gone/...        404
Each line: {"t": unix seconds (float), "method", "path", "headers": {...}, "body": text}
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = sys.argv[2]
ADDR = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
lock = threading.Lock()
seen = set()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        t = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        entry = {"t": t, "method": self.command, "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with lock:
            with open(LOG, "a") as f:
                f.write(json.dumps(entry) + "\n")
            first = self.path not in seen
            seen.add(self.path)
        status, extra = 204, {}
        if self.path.startswith("/fail"):
            status = 500
        elif self.path.startswith("/gone"):
            status = 404
        elif self.path.startswith("/slow"):
            time.sleep(3)
        elif self.path.startswith("/ratelimit") and first:
            status, extra = 429, {"Retry-After": "1"}
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
server = ThreadingHTTPServer((ADDR, PORT), Sink)
with open(LOG + ".ready", "w") as f:
    f.write("ready\n")
server.serve_forever()
