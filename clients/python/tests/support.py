"""Shared test helpers: puts the package on sys.path (so the suite runs from a checkout without
installing), a recording ``sleep`` for the runner, and ``Served`` (a handler running against a
fake appliance on a background thread)."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
from typing import Any, Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

from appliance_handler import Handler, Settings  # noqa: E402
from appliance_handler.runner import Runner  # noqa: E402


if not os.environ.get("APPLIANCE_HANDLER_TEST_LOG"):
    # Quiet by default; APPLIANCE_HANDLER_TEST_LOG=1 shows the library's log while debugging.
    logging.getLogger("appliance_handler").addHandler(logging.NullHandler())
    logging.getLogger("appliance_handler").propagate = False
else:
    logging.basicConfig(level=logging.DEBUG)


class RecordingSleep:
    """Stands in for the runner's waits: records each requested delay and returns at once
    (optionally calling ``on_call(n)`` first), so backoff is checked without sleeping."""

    def __init__(self, on_call: Optional[Callable[[int], None]] = None) -> None:
        self.delays: List[float] = []
        self.on_call = on_call
        self._lock = threading.Lock()

    def __call__(self, delay: float, event: threading.Event) -> bool:
        with self._lock:
            self.delays.append(delay)
            n = len(self.delays)
        if self.on_call is not None:
            self.on_call(n)
        return event.is_set()


class Served:
    """Runs ``handler`` against ``url`` on a thread; use as a context manager."""

    def __init__(self, handler: Handler, url: str, sleep: Optional[RecordingSleep] = None, **settings: Any) -> None:
        opts = {"lease_s": 2, "wait_s": 5, "backoff_base_s": 0.5, "backoff_cap_s": 4}
        opts.update(settings)
        self.settings = Settings(url=url, **opts)
        self.sleep = sleep if sleep is not None else RecordingSleep()
        self.runner = Runner(handler, self.settings, sleep=self.sleep, rng=random.Random(7))
        handler._runner = self.runner
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run(install_signals=False)
        except BaseException as err:  # surfaced by stop()
            self.error = err

    def __enter__(self) -> "Served":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, abandon: bool = False, timeout: float = 5.0) -> None:
        self.runner.stop(abandon=abandon)
        self.join(timeout)

    def join(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("the handler did not stop in time")
