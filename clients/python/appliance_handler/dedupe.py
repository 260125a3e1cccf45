"""Best-effort, in-process memory of completed runs.

Layer: pure (thread-safe container). Delivery is at-least-once: a run whose ack was lost, or
whose lease expired while the method was finishing, is delivered again under a new task id with
the same ``run_id``. ``RecentRuns`` remembers the last N completed run ids with their result so
the runner can ack such a redelivery without calling the method again. It lives in memory only:
after a restart, or beyond N runs, a redelivery runs the method again. Methods should therefore
be idempotent (e.g. key external side effects on ``run_id``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional


class RecentRuns:
    """The last ``capacity`` completed runs: ``run_id`` → the JSON text of their result."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._runs: "OrderedDict[str, str]" = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, run_id: str, result_json: str) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._runs[run_id] = result_json
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)

    def get(self, run_id: str) -> Optional[str]:
        """The remembered result JSON of ``run_id``, or None if it is not (or no longer) known."""
        with self._lock:
            return self._runs.get(run_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)
