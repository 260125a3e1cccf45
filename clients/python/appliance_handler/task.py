"""A leased task, parsed once from the lease response.

Layer: pure. ``parse_lease`` turns ``{"tasks": [...]}`` into ``Task`` values or
``MalformedTask`` entries; nothing after it looks at raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Union


@dataclass(frozen=True)
class Task:
    """One delivery of a run.

    ``id`` names this delivery (a new one per lease; heartbeat/ack/fail use it). ``run_id`` is
    the same for every attempt of the run: the dedupe key. ``attempt`` counts from 1.
    """

    id: str
    job_id: str
    run_id: str
    method: str
    params: Any
    attempt: int
    lease_expires_at: Any


@dataclass(frozen=True)
class MalformedTask:
    """A task entry the library cannot use. ``id`` is set when the entry at least names its
    delivery, so the runner can fail it (retry false) instead of letting its lease expire."""

    id: Optional[str]
    reason: str


def _ident(entry: dict, key: str) -> Optional[str]:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def parse_task(entry: Any) -> Union[Task, MalformedTask]:
    if not isinstance(entry, dict):
        return MalformedTask(None, f"a task must be a JSON object, got {type(entry).__name__}")
    task_id = _ident(entry, "id")
    if task_id is None:
        return MalformedTask(None, "a task has no usable 'id' (string or integer)")
    for key in ("job_id", "run_id"):
        if _ident(entry, key) is None:
            return MalformedTask(task_id, f"task {task_id} has no usable '{key}'")
    method = entry.get("method")
    if not isinstance(method, str) or not method:
        return MalformedTask(task_id, f"task {task_id} has no 'method' string")
    attempt = entry.get("attempt", 1)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        return MalformedTask(task_id, f"task {task_id} has a bad 'attempt': {attempt!r}")
    params = entry.get("params")
    return Task(
        id=task_id,
        job_id=str(entry["job_id"]),
        run_id=str(entry["run_id"]),
        method=method,
        params={} if params is None else params,
        attempt=attempt,
        lease_expires_at=entry.get("lease_expires_at"),
    )


def parse_lease(body: Any) -> List[Union[Task, MalformedTask]]:
    """The tasks of a lease response; raises ValueError when the body is not
    ``{"tasks": [...]}`` at all."""
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
        raise ValueError('the lease response is not {"tasks": [...]}')
    return [parse_task(entry) for entry in body["tasks"]]
