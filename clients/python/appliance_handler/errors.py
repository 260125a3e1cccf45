"""Exceptions of the handler library, each one a sentence a user can act on.

Layer: pure. Raised by the HTTP client (``ApiError``, ``Unavailable``, ``LeaseLost``), by
``Settings`` (``SettingsError``) and by handler methods (``PermanentError``).
"""

from __future__ import annotations

from typing import Optional


class PermanentError(Exception):
    """Raise from a handler method when retrying cannot help (bad params, a missing channel).

    The task is failed with ``retry: false``; any other exception fails it with
    ``retry: true`` and the appliance delivers the run again after its backoff.
    """


class SettingsError(ValueError):
    """A handler setting is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ApiError(Exception):
    """The appliance answered a request with a 4xx that retrying will not fix.

    ``status`` is the HTTP status, ``code``/``message``/``field`` come from the
    ``{"error": {...}}`` body when the server sent one.
    """

    def __init__(
        self,
        operation: str,
        status: int,
        code: str,
        message: str,
        field: Optional[str] = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(
            f"the appliance refused {operation}: HTTP {status} {code}{where}: {message}"
            + _hint(status)
        )


class Unavailable(Exception):
    """The appliance could not be reached or asked us to come back later (connection error,
    timeout, 429, 5xx). ``retry_after`` is the server's ``Retry-After`` in seconds, if any;
    ``status`` is the HTTP status, None when no answer came at all."""

    def __init__(
        self,
        operation: str,
        reason: str,
        retry_after: Optional[float] = None,
        status: Optional[int] = None,
    ) -> None:
        self.operation = operation
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
        super().__init__(f"{operation} did not get through: {reason}")


class LeaseLost(Exception):
    """HTTP 409: this process no longer holds the task's lease (it expired, or the run was
    handed to another delivery). Its result must not be acked under this delivery id."""

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        super().__init__(f"{operation}: lease no longer held: {message}")


def _hint(status: int) -> str:
    if status == 403:
        return (
            ". The WireGuard peer this machine connects through must have role 'handler' "
            "(appliance peer add NAME --role handler) and the URL must name the tunnel "
            "address (http://10.88.88.1:8888)"
        )
    if status == 404:
        return ". Is the appliance new enough to have the handler queue (API v1 tasks)?"
    return ""
