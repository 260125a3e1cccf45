"""Settings of a running handler, checked once when built.

Layer: pure. ``Settings`` is the checked type at the library's edge: every value the lease loop
uses has been validated here, and a bad one raises ``SettingsError`` naming the field.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from dataclasses import dataclass
from .errors import SettingsError

DEFAULT_URL = "http://10.88.88.1:8888"
"""The appliance's API on its tunnel address; ``APPLIANCE_URL`` overrides it."""


def default_url() -> str:
    return os.environ.get("APPLIANCE_URL") or DEFAULT_URL


@dataclass(frozen=True)
class Settings:
    """How a handler talks to the appliance.

    - ``url``: the API base, ``http://10.88.88.1:8888`` unless ``APPLIANCE_URL`` says otherwise.
    - ``concurrency``: worker threads; each lease asks for at most the number of free workers
      (1-100).
    - ``lease_s``: how long a lease lasts without a heartbeat; heartbeats go every
      ``lease_s / 3`` while a method runs. The appliance accepts 5-3600; the library only
      requires a positive number so that tests against a fake server can use shorter leases.
    - ``wait_s``: how long one lease request long-polls when nothing is queued (0-60).
    - ``dedupe_size``: how many completed run ids are remembered so that a redelivered,
      already-completed run is acked without running again (0 turns it off).
    - ``backoff_base_s`` / ``backoff_cap_s``: reconnect backoff, doubling from base to cap,
      with jitter.
    - ``max_retry_after_s``: the longest ``Retry-After`` honoured as given; longer ones are
      clamped to it.
    - ``request_timeout_s``: timeout of every request except the long poll (which gets
      ``wait_s`` more).
    """

    url: str = DEFAULT_URL
    concurrency: int = 1
    lease_s: float = 60
    wait_s: float = 30
    dedupe_size: int = 1000
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_retry_after_s: float = 300.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        url = self.url.rstrip("/") if isinstance(self.url, str) else self.url
        if not isinstance(url, str):
            raise SettingsError("url", "must be a string like http://10.88.88.1:8888")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                "url", f"'{self.url}' is not an http:// URL; use e.g. {DEFAULT_URL}"
            )
        if parts.path or parts.query or parts.fragment:
            raise SettingsError(
                "url", f"'{self.url}' must be only scheme, host and port, e.g. {DEFAULT_URL}"
            )
        object.__setattr__(self, "url", url)
        _int_in("concurrency", self.concurrency, 1, 100)
        _num_in("lease_s", self.lease_s, 0, 3600, low_open=True)
        _num_in("wait_s", self.wait_s, 0, 60)
        _int_in("dedupe_size", self.dedupe_size, 0, 1_000_000)
        _num_in("backoff_base_s", self.backoff_base_s, 0, 3600, low_open=True)
        _num_in("backoff_cap_s", self.backoff_cap_s, self.backoff_base_s, 3600)
        _num_in("max_retry_after_s", self.max_retry_after_s, 0, 86400)
        _num_in("request_timeout_s", self.request_timeout_s, 0, 3600, low_open=True)

    @property
    def heartbeat_every_s(self) -> float:
        """Seconds between heartbeats of a running task: a third of the lease, so two can be
        lost before it expires."""
        return self.lease_s / 3


def _int_in(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(field, f"must be a whole number from {low} to {high}, got {value!r}")


def _num_in(
    field: str, value: object, low: float, high: float, low_open: bool = False
) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not ok:
        bound = f"more than {low}" if low_open else f"at least {low}"
        raise SettingsError(field, f"must be a number {bound} and at most {high}, got {value!r}")


def json_number(value: float) -> object:
    """``value`` as an int when it is whole (the appliance parses whole seconds)."""
    return int(value) if float(value).is_integer() else value
