#!/usr/bin/env python3
"""A minimal handler for the interop tests: registers, long-polls for tasks, runs them, acks.

Usage: handler.py LOGFILE   (runs inside a namespace whose WireGuard peer has role handler;
                             its identity is that peer, so it names no handler_id anywhere)

Methods:
  echo   acks at once with {"echo": params}
  slow   works params["seconds"] (sending a heartbeat every 2 s), then acks {"slept": s}
  boom   fails with retry true
Each event is one JSON line in LOGFILE: {"t", "event", ...}; "registered" once registered.
Errors talking to the appliance (it may be restarting) are logged and retried.
"""
import json
import sys
import time
import urllib.error
import urllib.request

BASE = "http://10.88.88.1:8888"
LOG = sys.argv[1]
LEASE_S = 5


def log(event, **kw):
    kw.update(t=time.time(), event=event)
    with open(LOG, "a") as f:
        f.write(json.dumps(kw) + "\n")


def call(method, path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=70) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def retrying(method, path, body, what):
    """Retries while the appliance is unreachable (restarts); returns (status, body)."""
    while True:
        try:
            return call(method, path, body)
        except Exception as e:  # connection refused, reset, timeout
            log("unreachable", what=what, error=str(e))
            time.sleep(0.5)


def finish(task, verb, body):
    status, reply = retrying("POST", f"/api/v1/tasks/{task['id']}/{verb}", body, verb)
    log(verb, id=task["id"], run_id=task["run_id"], attempt=task["attempt"],
        status=status, reply=reply)


def run(task):
    p = task["params"]
    if task["method"] == "echo":
        finish(task, "ack", {"result": {"echo": p}})
    elif task["method"] == "slow":
        end = time.time() + p["seconds"]
        while time.time() < end:
            time.sleep(min(2, max(0, end - time.time())))
            if time.time() < end:
                status, reply = retrying(
                    "POST", f"/api/v1/tasks/{task['id']}/heartbeat", {"lease_s": LEASE_S}, "heartbeat")
                log("heartbeat", id=task["id"], run_id=task["run_id"], status=status)
                if status != 200:
                    return  # the lease is gone: drop the task
        finish(task, "ack", {"result": {"slept": p["seconds"]}})
    else:
        finish(task, "fail", {"error": "boom", "retry": True})


def main():
    status, reply = retrying("PUT", "/api/v1/handler", {"methods": ["echo", "slow", "boom"]}, "register")
    log("registered", status=status, reply=reply)
    while True:
        status, reply = retrying(
            "POST", "/api/v1/tasks/lease", {"wait_s": 10, "max": 4, "lease_s": LEASE_S}, "lease")
        if status != 200:
            log("lease_error", status=status, reply=reply)
            time.sleep(0.5)
            continue
        for task in reply["tasks"]:
            log("lease", id=task["id"], run_id=task["run_id"], attempt=task["attempt"],
                method=task["method"])
            run(task)


if __name__ == "__main__":
    main()
