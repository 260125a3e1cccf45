"""An in-process fake of the appliance's handler API, standard library only.

It implements the pinned routes with real lease semantics on ``time.monotonic``: a lease holds
a run for ``lease_s``; a heartbeat by the holder extends it; when it runs out the run becomes
available again and the next lease delivers it under a new task id with ``attempt + 1``;
heartbeat/ack/fail by a delivery that no longer holds its run get 409; ack of an already acked
delivery is 200 (idempotent). It checks what the real gate checks: ``Host`` must be the
address it listens on, no ``Origin`` on writes, ``Content-Type: application/json``, bounds of
``wait_s``/``max``/``lease_s`` (400 naming the field). The one deliberate difference: the
lowest ``lease_s`` is ``min_lease_s`` (default 0.1 s instead of 5 s) so the suite stays fast.

Tests steer it with ``enqueue``, ``inject`` (a scripted reply for the next calls of a route),
``revoke_on_heartbeat``, ``request_cancel`` and ``redeliver``, and read ``requests`` and the
run records.
"""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass
class Run:
    run_id: str
    job_id: str
    method: str
    params: Any
    state: str = "available"  # available | leased | done | dead
    attempt: int = 0
    delivery: Optional[str] = None
    expires: float = 0.0
    lease_s: float = 0.0
    cancel: bool = False
    revoke: bool = False
    result: Any = None
    deliveries: List[str] = field(default_factory=list)
    acks: List[str] = field(default_factory=list)
    fails: List[dict] = field(default_factory=list)
    heartbeats: int = 0


class FakeAppliance:
    def __init__(self, port: int = 0, min_lease_s: float = 0.1) -> None:
        self.port = port
        self.min_lease_s = min_lease_s
        self.cond = threading.Condition()
        self.runs: Dict[str, Run] = {}
        self.order: List[str] = []
        self.by_delivery: Dict[str, str] = {}
        self.acked_deliveries: Dict[str, str] = {}
        self.failed_deliveries: Dict[str, str] = {}
        self.methods: Optional[List[str]] = None
        self.requests: List[Tuple[str, str, Any]] = []
        self.injections: Dict[str, List[Tuple[int, Dict[str, str], Any]]] = {}
        self.handler_id = "test-bot"
        self._ids = itertools.count(1)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "FakeAppliance":
        fake = self

        class Handler(_RequestHandler):
            appliance = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- steering -------------------------------------------------------------------------

    def enqueue(self, method: str, params: Any = None, run_id: Optional[str] = None) -> str:
        with self.cond:
            run_id = run_id or f"r{next(self._ids)}"
            self.runs[run_id] = Run(run_id, f"job-{run_id}", method, params if params is not None else {})
            self.order.append(run_id)
            self.cond.notify_all()
            return run_id

    def inject(self, route: str, status: int, headers: Optional[Dict[str, str]] = None,
               body: Any = None, count: int = 1) -> None:
        """The next ``count`` calls of ``route`` (register, lease, heartbeat, ack, fail) get
        this reply instead of the real one."""
        if body is None:
            body = {"error": {"code": f"injected_{status}", "message": "injected by the test", "field": None}}
        with self.cond:
            self.injections.setdefault(route, []).extend([(status, headers or {}, body)] * count)

    def revoke_on_heartbeat(self, run_id: str) -> None:
        """The next heartbeat for this run expires its lease at once and gets 409."""
        with self.cond:
            self.runs[run_id].revoke = True

    def request_cancel(self, run_id: str) -> None:
        with self.cond:
            self.runs[run_id].cancel = True

    def redeliver(self, run_id: str) -> None:
        """Make a finished run available again (as if the server lost the ack)."""
        with self.cond:
            run = self.runs[run_id]
            run.state = "available"
            run.delivery = None
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def run(self, run_id: str) -> Run:
        with self.cond:
            return self.runs[run_id]

    def paths(self, route_suffix: str) -> List[str]:
        with self.cond:
            return [p for (_m, p, _b) in self.requests if p.endswith(route_suffix)]

    def bodies(self, route_suffix: str) -> List[Any]:
        with self.cond:
            return [b for (_m, p, b) in self.requests if p.endswith(route_suffix)]

    # -- semantics (called with self.cond held) -------------------------------------------

    def _sweep(self, now: float) -> None:
        for run in self.runs.values():
            if run.state == "leased" and run.expires <= now:
                self._release(run)

    def _release(self, run: Run) -> None:
        if run.delivery is not None:
            self.by_delivery.pop(run.delivery, None)
        run.state = "available"
        run.delivery = None
        self.cond.notify_all()

    def _held(self, task_id: str, now: float) -> Optional[Run]:
        self._sweep(now)
        run_id = self.by_delivery.get(task_id)
        if run_id is None:
            return None
        run = self.runs[run_id]
        return run if run.state == "leased" and run.delivery == task_id else None

    def _next_expiry(self) -> Optional[float]:
        times = [r.expires for r in self.runs.values() if r.state == "leased"]
        return min(times) if times else None

    def lease(self, wait_s: float, max_tasks: int, lease_s: float) -> List[dict]:
        deadline = time.monotonic() + wait_s
        with self.cond:
            while True:
                now = time.monotonic()
                self._sweep(now)
                ready = [r for rid in self.order for r in [self.runs[rid]] if r.state == "available"]
                if ready or now >= deadline:
                    break
                wake = deadline
                expiry = self._next_expiry()
                if expiry is not None:
                    wake = min(wake, expiry)
                self.cond.wait(max(0.001, wake - now))
            tasks = []
            for run in ready[:max_tasks]:
                delivery = f"t{next(self._ids)}"
                run.state = "leased"
                run.attempt += 1
                run.delivery = delivery
                run.lease_s = lease_s
                run.expires = now + lease_s
                run.deliveries.append(delivery)
                self.by_delivery[delivery] = run.run_id
                tasks.append({
                    "id": delivery, "job_id": run.job_id, "run_id": run.run_id,
                    "method": run.method, "params": run.params, "attempt": run.attempt,
                    "lease_expires_at": _iso(lease_s),
                })
            self.cond.notify_all()
            return tasks


def _iso(in_s: float) -> str:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=in_s)
    return when.isoformat()


class _RequestHandler(BaseHTTPRequestHandler):
    appliance: FakeAppliance

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def _reply(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. a long poll cut short by stop())

    def _error(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        self._reply(status, {"error": {"code": code, "message": message, "field": field}})

    def _handle(self, verb: str) -> None:
        fake = self.appliance
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with fake.cond:
            fake.requests.append((verb, self.path, body))
            fake.cond.notify_all()
        if self.headers.get("Host") != f"127.0.0.1:{fake.port}":
            return self._error(403, "forbidden_host", f"Host '{self.headers.get('Host')}' is not this appliance", "Host")
        if self.headers.get("Origin") is not None:
            return self._error(403, "forbidden_origin", "cross-origin write refused", "Origin")
        if verb in ("PUT", "POST") and self.headers.get("Content-Type") != "application/json":
            return self._error(415, "unsupported_media_type", "send Content-Type: application/json", "Content-Type")
        if not isinstance(body, dict):
            return self._error(400, "bad_json", "the body must be a JSON object")
        parts = self.path.split("/")
        if verb == "PUT" and self.path == "/api/v1/handler":
            route, task_id = "register", None
        elif verb == "POST" and self.path == "/api/v1/tasks/lease":
            route, task_id = "lease", None
        elif verb == "POST" and len(parts) == 6 and parts[:4] == ["", "api", "v1", "tasks"] and parts[5] in ("heartbeat", "ack", "fail"):
            route, task_id = parts[5], parts[4]
        else:
            return self._error(404, "not_found", f"no route {verb} {self.path}")
        with fake.cond:
            injected = fake.injections.get(route)
            if injected:
                status, headers, ibody = injected.pop(0)
                return self._reply(status, ibody, headers)
        getattr(self, f"_route_{route}")(body, task_id)

    def _route_register(self, body: dict, _task_id: None) -> None:
        methods = body.get("methods")
        if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
            return self._error(400, "invalid", "methods must be a list of names", "methods")
        fake = self.appliance
        with fake.cond:
            fake.methods = list(methods)
            fake.cond.notify_all()
        self._reply(200, {"handler_id": fake.handler_id, "methods": methods})

    def _route_lease(self, body: dict, _task_id: None) -> None:
        fake = self.appliance
        checks = (("wait_s", 0, 60), ("max", 1, 100), ("lease_s", fake.min_lease_s, 3600))
        for name, low, high in checks:
            value = body.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                return self._error(400, "invalid", f"{name} must be from {low} to {high}", name)
        if not isinstance(body["max"], int):
            return self._error(400, "invalid", "max must be a whole number", "max")
        self._reply(200, {"tasks": fake.lease(body["wait_s"], body["max"], body["lease_s"])})

    def _route_heartbeat(self, body: dict, task_id: str) -> None:
        fake = self.appliance
        lease_s = body.get("lease_s")
        if isinstance(lease_s, bool) or not isinstance(lease_s, (int, float)) or not fake.min_lease_s <= lease_s <= 3600:
            return self._error(400, "invalid", "lease_s out of range", "lease_s")
        with fake.cond:
            run = fake._held(task_id, time.monotonic())
            if run is None:
                return self._error(409, "lease_lost", f"task {task_id} is not leased by you")
            run.heartbeats += 1
            if run.revoke:
                run.revoke = False
                fake._release(run)
                return self._error(409, "lease_lost", f"task {task_id} is not leased by you")
            run.expires = time.monotonic() + lease_s
            cancel = run.cancel
            fake.cond.notify_all()
        self._reply(200, {"lease_expires_at": _iso(lease_s), "cancel_requested": cancel})

    def _route_ack(self, body: dict, task_id: str) -> None:
        fake = self.appliance
        if "result" not in body:
            return self._error(400, "invalid", "result is required", "result")
        with fake.cond:
            if task_id in fake.acked_deliveries:
                return self._reply(200, {})
            run = fake._held(task_id, time.monotonic())
            if run is None:
                return self._error(409, "lease_lost", f"task {task_id}'s lease expired")
            run.state = "done"
            run.result = body["result"]
            run.acks.append(task_id)
            fake.by_delivery.pop(task_id, None)
            fake.acked_deliveries[task_id] = run.run_id
            fake.cond.notify_all()
        self._reply(200, {})

    def _route_fail(self, body: dict, task_id: str) -> None:
        fake = self.appliance
        if not isinstance(body.get("error"), str) or not isinstance(body.get("retry"), bool):
            return self._error(400, "invalid", "error (string) and retry (boolean) are required", "error")
        with fake.cond:
            if task_id in fake.failed_deliveries:
                return self._reply(200, {})
            run = fake._held(task_id, time.monotonic())
            if run is None:
                return self._error(409, "lease_lost", f"task {task_id}'s lease expired")
            run.fails.append({"task": task_id, "error": body["error"], "retry": body["retry"]})
            fake.by_delivery.pop(task_id, None)
            fake.failed_deliveries[task_id] = run.run_id
            run.delivery = None
            run.state = "available" if body["retry"] else "dead"
            fake.cond.notify_all()
        self._reply(200, {})
