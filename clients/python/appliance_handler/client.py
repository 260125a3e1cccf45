"""HTTP client for the appliance's handler API.

Layer: driver (does network I/O; no retries, no sleeping). One method per route; each returns
parsed data or raises exactly one of:

- ``Unavailable``: connection error, timeout, 429, 5xx, or a reply that is not JSON (retry
  later; ``retry_after`` carries the server's ``Retry-After``);
- ``LeaseLost``: 409 on heartbeat/ack/fail (this delivery id is no longer ours);
- ``ApiError``: any other 4xx (a mistake retrying will not fix).

Every request opens its own connection (the tunnel is local and requests are few), sends
``Content-Type: application/json`` and never an ``Origin`` header; ``Host`` is the URL's
host and port, which for the default URL is the tunnel address the appliance requires.
``abort()`` cuts a long poll short from another thread (used on shutdown).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import Any, List, Optional, Tuple, Union

from . import __version__
from .errors import ApiError, LeaseLost, Unavailable
from .settings import Settings, json_number
from .task import MalformedTask, Task, parse_lease

USER_AGENT = f"appliance-handler/{__version__} (python)"


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """A ``Retry-After`` header in seconds (delta seconds or an HTTP date), None when absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class ApiClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        parts = urllib.parse.urlsplit(settings.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._lock = threading.Lock()
        self._long_poll: Optional[http.client.HTTPConnection] = None
        self._aborted = False

    # -- routes ---------------------------------------------------------------------------

    def register(self, methods: List[str]) -> dict:
        """``PUT /api/v1/handler``: replace this peer's methods. Returns
        ``{"handler_id", "methods"}``."""
        body = self._request("PUT", "/api/v1/handler", json.dumps({"methods": methods}),
                             "register (PUT /api/v1/handler)")
        if not isinstance(body, dict) or not isinstance(body.get("handler_id"), str):
            raise Unavailable("register", "the reply has no handler_id string", status=200)
        return body

    def lease(self, wait_s: float, max_tasks: int, lease_s: float) -> List[Union[Task, MalformedTask]]:
        """``POST /api/v1/tasks/lease``: long-polls up to ``wait_s``; [] when nothing came or
        when ``abort()`` cut the poll short."""
        payload = json.dumps(
            {"wait_s": json_number(wait_s), "max": max_tasks, "lease_s": json_number(lease_s)}
        )
        try:
            body = self._request(
                "POST", "/api/v1/tasks/lease", payload, "lease (POST /api/v1/tasks/lease)",
                timeout=self.settings.request_timeout_s + wait_s, long_poll=True,
            )
        except Unavailable:
            with self._lock:
                if self._aborted:
                    return []
            raise
        try:
            return parse_lease(body)
        except ValueError as err:
            raise Unavailable("lease", str(err), status=200) from None

    def heartbeat(self, task_id: str, lease_s: float) -> Tuple[Any, bool]:
        """``POST /api/v1/tasks/{id}/heartbeat``: extend the lease. Returns
        ``(lease_expires_at, cancel_requested)``."""
        body = self._request(
            "POST", f"/api/v1/tasks/{_q(task_id)}/heartbeat",
            json.dumps({"lease_s": json_number(lease_s)}), f"heartbeat of task {task_id}",
            lease_op=True,
        )
        if not isinstance(body, dict):
            raise Unavailable(
                f"heartbeat of task {task_id}", "the reply is not a JSON object", status=200
            )
        return body.get("lease_expires_at"), body.get("cancel_requested") is True

    def ack(self, task_id: str, result_json: str) -> None:
        """``POST /api/v1/tasks/{id}/ack`` with an already serialised result."""
        self._request("POST", f"/api/v1/tasks/{_q(task_id)}/ack", '{"result": ' + result_json + "}",
                      f"ack of task {task_id}", lease_op=True)

    def fail(self, task_id: str, error: str, retry: bool) -> None:
        """``POST /api/v1/tasks/{id}/fail``."""
        self._request("POST", f"/api/v1/tasks/{_q(task_id)}/fail",
                      json.dumps({"error": error, "retry": retry}),
                      f"fail of task {task_id}", lease_op=True)

    def abort(self) -> None:
        """Cut the current long poll short (thread-safe, no waiting) and make later ones
        return at once; shutdown calls it."""
        with self._lock:
            self._aborted = True
            conn = self._long_poll
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _request(
        self,
        method: str,
        path: str,
        body: str,
        operation: str,
        timeout: Optional[float] = None,
        long_poll: bool = False,
        lease_op: bool = False,
    ) -> Any:
        conn = self._connection(timeout or self.settings.request_timeout_s)
        try:
            try:
                if long_poll:
                    # Connect first: abort() can only cut a connection that has a socket.
                    conn.connect()
                    with self._lock:
                        if self._aborted:
                            raise Unavailable(operation, "the handler is stopping")
                        self._long_poll = conn
                conn.request(
                    method,
                    path,
                    body=body.encode("utf-8"),
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                )
                resp = conn.getresponse()
                status = resp.status
                retry_after = parse_retry_after(resp.getheader("Retry-After"))
                raw = resp.read()
            except (OSError, http.client.HTTPException) as err:
                reason = _describe(err)
                raise Unavailable(operation, f"{reason} (is the WireGuard tunnel to "
                                             f"{self.settings.url} up?)") from None
        finally:
            if long_poll:
                with self._lock:
                    self._long_poll = None
            conn.close()
        if 200 <= status < 300:
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise Unavailable(
                    operation, f"HTTP {status} with a body that is not JSON", status=status
                ) from None
        code, message, field = _error_fields(status, raw)
        if status == 429 or status == 408 or status >= 500:
            raise Unavailable(operation, f"HTTP {status} {code}: {message}", retry_after, status)
        if status == 409 and lease_op:
            raise LeaseLost(operation, message)
        raise ApiError(operation, status, code, message, field)


def _q(task_id: str) -> str:
    return urllib.parse.quote(task_id, safe="")


def _describe(err: BaseException) -> str:
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}" if text != type(err).__name__ else text


def _error_fields(status: int, raw: bytes) -> Tuple[str, str, Optional[str]]:
    try:
        err = json.loads(raw)["error"]
        code = str(err.get("code") or f"http_{status}")
        message = str(err.get("message") or "")
        field = err.get("field")
        return code, message, field if isinstance(field, str) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        text = raw[:200].decode("utf-8", "replace").strip()
        return f"http_{status}", text or "(no body)", None
