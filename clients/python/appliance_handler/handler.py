"""``Handler``: the base class guild bots extend.

Layer: glue. Finds the callable methods (ScheduleZero's rule), calls one with a task's params,
and hands the lease loop to ``runner.Runner``.

Discovery follows ScheduleZero's ``ZMQHandlerBase._discover_methods``: every public callable
(name not starting with ``_``) is a method the appliance may call, except the base class's own
API (``run``, ``stop``, ``current_task``); ``ping`` is always registered. A method is called as
``method(params)`` when it takes a parameter, else ``method()``, again as ScheduleZero does.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Dict, Optional

from .settings import Settings, default_url

_local = threading.local()


class TaskContext:
    """What a running method may ask about its task: ids, attempt, and whether the appliance
    has asked to cancel it (``cancel_requested``, set by a heartbeat reply)."""

    def __init__(self, task_id: str, job_id: str, run_id: str, method: str, attempt: int) -> None:
        self.task_id = task_id
        self.job_id = job_id
        self.run_id = run_id
        self.method = method
        self.attempt = attempt
        self._cancel = threading.Event()
        self._lost = threading.Event()

    @property
    def cancel_requested(self) -> bool:
        """True once a heartbeat said the run was cancelled; the result will not be acked, so a
        long method may stop early."""
        return self._cancel.is_set()

    @property
    def lease_lost(self) -> bool:
        """True once a heartbeat got 409: another delivery owns the run now; the result will
        not be acked under this task id."""
        return self._lost.is_set()


class Handler:
    """Base class of a handler. Subclass it, add public methods, call ``run()``.

    ``__init__`` takes no settings, so ``python -m appliance_handler module:Class`` can build
    any handler whose constructor needs no arguments; settings go to ``run()``.
    """

    # The base class's own API, never registered as job methods.
    _BASE_API = frozenset({"run", "stop", "current_task"})

    def ping(self, params: Any = None) -> Dict[str, Any]:
        """Health check, registered like ScheduleZero's: schedule it to test the path."""
        return {"message": "pong"}

    def run(self, settings: Optional[Settings] = None, install_signals: bool = True, **kwargs: Any) -> None:
        """Register and serve until ``stop()`` (or SIGINT/SIGTERM when called from the main
        thread with ``install_signals``). Settings come from ``settings`` or keyword arguments
        (``url=``, ``concurrency=``, ``lease_s=``, ...); the URL defaults to ``$APPLIANCE_URL``,
        else ``http://10.88.88.1:8888``. Raises ``ApiError`` when the appliance refuses
        registration or leasing for a reason retrying cannot fix."""
        from .runner import Runner

        if settings is None:
            kwargs.setdefault("url", default_url())
            settings = Settings(**kwargs)
        elif kwargs:
            raise TypeError("pass either settings or keyword settings, not both")
        runner = Runner(self, settings)
        self._runner = runner
        runner.run(install_signals=install_signals)

    def stop(self, abandon: bool = False) -> None:
        """Stop leasing. Running methods finish and are acked unless ``abandon``, which fails
        them with ``retry: true`` at once so the appliance can hand them out again."""
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.stop(abandon=abandon)

    @staticmethod
    def current_task() -> Optional[TaskContext]:
        """The task the calling thread is running, or None outside a method."""
        return getattr(_local, "task", None)

    # -- used by the runner ---------------------------------------------------------------

    def _discover_methods(self) -> Dict[str, Callable[..., Any]]:
        methods: Dict[str, Callable[..., Any]] = {}
        for name in dir(self):
            if name.startswith("_") or name in self._BASE_API:
                continue
            value = getattr(self, name, None)
            if callable(value) and not inspect.isclass(value):
                methods[name] = value
        methods["ping"] = self.ping
        return methods


def call_method(method: Callable[..., Any], params: Any) -> Any:
    """Call ``method`` the ScheduleZero way: with ``params`` if it takes a parameter."""
    try:
        takes_params = len(inspect.signature(method).parameters) > 0
    except (TypeError, ValueError):
        takes_params = True
    return method(params) if takes_params else method()


def set_current_task(ctx: Optional[TaskContext]) -> None:
    _local.task = ctx
