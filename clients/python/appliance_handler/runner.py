"""The lease loop: register, lease, run methods on worker threads, heartbeat, ack or fail.

Layer: driver. Owns the threads and the only clocks of the library (``time.monotonic`` for
lease deadlines, ``Event.wait`` for heartbeat intervals and backoff waits).

Threads:

- the **lease thread** registers the methods, then long-polls ``POST /api/v1/tasks/lease`` for
  at most as many tasks as there are idle workers, and hands them to the workers. On a
  connection error, 429 or 5xx it waits (``Backoff``: exponential, jittered, capped, or the
  server's ``Retry-After``) and tries again; after a connection-level failure it registers
  again before leasing. On stop it stops leasing and waits for running methods (graceful) or
  fails them with ``retry: true`` (abandon).
- ``concurrency`` **worker threads** run one task each: dedupe check, the method, then ack or
  fail. Ack and fail are retried on connection errors until the lease would have expired.
- one **heartbeat thread per running task** extends its lease every ``lease_s / 3``. A reply
  with ``cancel_requested`` or a 409 marks the task; its result is then not acked (logged).
- the thread that called ``run()`` only joins the lease thread, so SIGINT/SIGTERM handlers
  (installed when it is the main thread) never wait on a lock it holds.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from .backoff import Backoff
from .client import ApiClient
from .dedupe import RecentRuns
from .errors import ApiError, LeaseLost, PermanentError, Unavailable
from .handler import Handler, TaskContext, call_method, set_current_task
from .settings import Settings
from .task import MalformedTask, Task

log = logging.getLogger("appliance_handler")

MAX_RESULT_BYTES = 64 * 1024
"""The appliance stores results up to 64 KiB."""

MAX_ERROR_CHARS = 4000

Sleep = Callable[[float, threading.Event], Any]
"""``sleep(delay, event)`` waits ``delay`` seconds or until ``event`` is set. Tests pass a
recorder instead of real waiting."""


def _event_sleep(delay: float, event: threading.Event) -> Any:
    return event.wait(delay)


@dataclass(frozen=True)
class Success:
    result_json: str


@dataclass(frozen=True)
class Failure:
    error: str
    retry: bool


Outcome = Union[Success, Failure]


class _Completion:
    """The outcome of a run still executing here, for a redelivery of the same run that
    arrives meanwhile (its lease was lost while the method kept running)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._outcome: Optional[Outcome] = None

    def set(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._done.set()

    def wait(self) -> Outcome:
        self._done.wait()
        assert self._outcome is not None
        return self._outcome


class _Running:
    """A task from lease to report."""

    def __init__(self, task: Task, leased_at: float, lease_s: float) -> None:
        self.task = task
        self.ctx = TaskContext(task.id, task.job_id, task.run_id, task.method, task.attempt)
        self.deadline = leased_at + lease_s
        self._reported = False
        self._lock = threading.Lock()

    def claim_report(self) -> bool:
        """True exactly once: whoever gets it reports this delivery (worker or abandon)."""
        with self._lock:
            if self._reported:
                return False
            self._reported = True
            return True


class Runner:
    """Serves one ``Handler`` with one ``Settings`` until stopped. ``Handler.run`` builds it;
    tests may build it directly to pass ``sleep``, ``rng`` or a ``client``."""

    def __init__(
        self,
        handler: Handler,
        settings: Settings,
        sleep: Optional[Sleep] = None,
        rng: Optional[random.Random] = None,
        client: Optional[ApiClient] = None,
    ) -> None:
        self.handler = handler
        self.settings = settings
        self.client = client if client is not None else ApiClient(settings)
        self.methods = handler._discover_methods()
        self.recent = RecentRuns(settings.dedupe_size)
        self.handler_id: Optional[str] = None
        self._sleep: Sleep = sleep if sleep is not None else _event_sleep
        self._rng = rng if rng is not None else random.Random()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._cond = threading.Condition()
        self._busy = 0
        self._in_flight: Dict[str, _Running] = {}
        self._runs_here: Dict[str, _Completion] = {}
        self._work: "queue.Queue[Optional[_Running]]" = queue.Queue()
        self._fatal: Optional[BaseException] = None

    # -- public ---------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> None:
        """Serve until stopped; re-raises a fatal ``ApiError`` (registration or leasing
        refused)."""
        previous = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        workers = [
            threading.Thread(target=self._worker, name=f"appliance-worker-{i}", daemon=True)
            for i in range(self.settings.concurrency)
        ]
        for worker in workers:
            worker.start()
        leaser = threading.Thread(target=self._lease_thread, name="appliance-lease", daemon=True)
        leaser.start()
        try:
            leaser.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._fatal is not None:
            raise self._fatal

    def stop(self, abandon: bool = False) -> None:
        """Stop leasing; with ``abandon`` also give up running methods (failed with
        ``retry: true``). Safe to call from any thread and from a signal handler."""
        self._stop.set()
        if abandon:
            self._abandon.set()
        self.client.abort()
        with self._cond:
            self._cond.notify_all()

    # -- signals --------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            log.warning("%s again: abandoning running tasks (the appliance will hand them out again)", name)
            self.stop(abandon=True)
        else:
            log.info("%s: no new tasks; finishing %d running task(s) (send %s again to abandon them)",
                     name, self._busy, name)
            self.stop()

    # -- lease thread ---------------------------------------------------------------------

    def _lease_thread(self) -> None:
        try:
            self._lease_loop()
            self._drain()
        except ApiError as err:
            log.error("%s", err)
            self._fatal = err
            self.stop(abandon=True)
            self._abandon_running()
        except BaseException as err:  # a bug here must stop the handler, not hang it
            log.exception("the lease loop crashed")
            self._fatal = err
            self.stop(abandon=True)
            self._abandon_running()
        finally:
            for _ in range(self.settings.concurrency):
                self._work.put(None)

    def _lease_loop(self) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_base_s, s.backoff_cap_s, s.max_retry_after_s, self._rng)
        registered = False
        while not self._stop.is_set():
            if not registered:
                try:
                    reply = self.client.register(sorted(self.methods))
                except Unavailable as err:
                    self._back_off(backoff, err)
                    continue
                self.handler_id = reply["handler_id"]
                registered = True
                backoff.reset()
                log.info("registered as handler '%s' with methods %s", self.handler_id,
                         ", ".join(reply.get("methods") or sorted(self.methods)))
            with self._cond:
                while self._busy >= s.concurrency and not self._stop.is_set():
                    self._cond.wait()
                free = s.concurrency - self._busy
            if self._stop.is_set():
                break
            leased_at = time.monotonic()
            try:
                tasks = self.client.lease(s.wait_s, free, s.lease_s)
            except Unavailable as err:
                if err.status is None:
                    registered = False  # connection-level: the server may have restarted
                self._back_off(backoff, err)
                continue
            backoff.reset()
            if len(tasks) > free:
                log.warning("asked for at most %d task(s) and got %d; running them all", free, len(tasks))
            for entry in tasks:
                self._dispatch(entry, leased_at)

    def _back_off(self, backoff: Backoff, err: Unavailable) -> None:
        delay = backoff.next_delay(err.retry_after)
        why = "as the server asked (Retry-After)" if err.retry_after is not None else "backing off"
        log.warning("%s; retrying in %.1f s, %s (failure %d in a row)", err, delay, why, backoff.failures)
        self._sleep(delay, self._stop)

    def _dispatch(self, entry: Union[Task, MalformedTask], leased_at: float) -> None:
        if isinstance(entry, MalformedTask):
            log.error("the appliance sent a task this library cannot read: %s", entry.reason)
            if entry.id is not None:
                self._report_once(entry.id, Failure(entry.reason, retry=False), time.monotonic() + self.settings.lease_s)
            return
        running = _Running(entry, leased_at, self.settings.lease_s)
        with self._cond:
            self._busy += 1
            self._in_flight[entry.id] = running
        self._work.put(running)

    def _drain(self) -> None:
        """After stop: wait for running tasks (or abandon them if asked)."""
        with self._cond:
            if self._busy:
                log.info("waiting for %d running task(s) to finish", self._busy)
            while self._busy and not self._abandon.is_set():
                self._cond.wait()
        if self._abandon.is_set():
            self._abandon_running()
        log.info("stopped")

    def _abandon_running(self) -> None:
        with self._cond:
            running = list(self._in_flight.values())
        for r in running:
            if r.claim_report():
                try:
                    self.client.fail(r.task.id, "the handler shut down before the method finished", True)
                    log.warning("task %s (run %s, %s): abandoned, failed with retry", r.task.id, r.task.run_id, r.task.method)
                except (Unavailable, LeaseLost, ApiError) as err:
                    log.warning("task %s: could not hand it back (%s); its lease will expire", r.task.id, err)

    # -- workers --------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            running = self._work.get()
            if running is None:
                return
            try:
                self._process(running)
            except Exception:
                log.exception("task %s: unexpected error in the runner", running.task.id)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._in_flight.pop(running.task.id, None)
                    self._cond.notify_all()

    def _process(self, r: _Running) -> None:
        task = r.task
        if self._abandon.is_set():
            return  # handed back already by _abandon_running
        log.info("task %s: %s (job %s, run %s, attempt %d)", task.id, task.method, task.job_id, task.run_id, task.attempt)
        cached = self.recent.get(task.run_id)
        if cached is not None:
            log.info("task %s: run %s already completed here; acking the redelivery without running it again", task.id, task.run_id)
            self._finish(r, Success(cached))
            return
        with self._cond:
            original = self._runs_here.get(task.run_id)
            mine = None
            if original is None:
                mine = self._runs_here[task.run_id] = _Completion()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(r, done), name=f"appliance-heartbeat-{task.id}", daemon=True)
        beat.start()
        try:
            if original is not None:
                log.info("task %s: run %s is still running here under an earlier delivery; waiting for it", task.id, task.run_id)
                outcome = original.wait()
            else:
                outcome = self._execute(r)
        finally:
            done.set()
            if mine is not None:
                with self._cond:
                    self._runs_here.pop(task.run_id, None)
        if mine is not None:
            if isinstance(outcome, Success):
                self.recent.remember(task.run_id, outcome.result_json)
            mine.set(outcome)
        beat.join()
        self._finish(r, outcome)

    def _execute(self, r: _Running) -> Outcome:
        task = r.task
        method = self.methods.get(task.method)
        if method is None:
            return Failure(f"this handler has no method '{task.method}' (it registered: {', '.join(sorted(self.methods))})", retry=False)
        set_current_task(r.ctx)
        try:
            result = call_method(method, task.params)
        except PermanentError as err:
            log.warning("task %s: %s raised PermanentError: %s", task.id, task.method, err)
            return Failure(_describe(err), retry=False)
        except Exception as err:
            log.exception("task %s: %s raised", task.id, task.method)
            return Failure(_describe(err), retry=True)
        finally:
            set_current_task(None)
        if isinstance(result, dict) and result.get("success") is False:
            # ScheduleZero's convention for a failure without an exception.
            return Failure(str(result.get("error") or f"{task.method} returned success: false"), retry=True)
        try:
            result_json = json.dumps(result, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as err:
            return Failure(
                f"{task.method} returned a result that is not JSON ({err}); return dicts, lists, "
                "strings, numbers, booleans or None", retry=False)
        size = len(result_json.encode("utf-8"))
        if size > MAX_RESULT_BYTES:
            return Failure(f"{task.method} returned {size} bytes of JSON; the appliance keeps at most "
                           f"{MAX_RESULT_BYTES}; return less (e.g. an id or a summary)", retry=False)
        return Success(result_json)

    def _heartbeat(self, r: _Running, done: threading.Event) -> None:
        s = self.settings
        while not done.wait(s.heartbeat_every_s):
            sent = time.monotonic()
            try:
                _expires, cancel = self.client.heartbeat(r.task.id, s.lease_s)
            except LeaseLost as err:
                r.ctx._lost.set()
                log.warning("task %s: %s; its result will not be acked", r.task.id, err)
                return
            except (Unavailable, ApiError) as err:
                log.warning("task %s: heartbeat failed (%s); trying again in %.1f s", r.task.id, err, s.heartbeat_every_s)
                continue
            r.deadline = sent + s.lease_s
            if cancel:
                r.ctx._cancel.set()
                log.warning("task %s: the appliance asked to cancel run %s; its result will not be acked", r.task.id, r.task.run_id)
                return

    def _finish(self, r: _Running, outcome: Outcome) -> None:
        task = r.task
        if r.ctx.lease_lost:
            log.warning("task %s: %s finished after its lease was lost; not acking (the run is redelivered%s)",
                        task.id, task.method, "; this result is remembered for it" if isinstance(outcome, Success) and self.recent.capacity else "")
            return
        if r.ctx.cancel_requested:
            log.warning("task %s: %s finished after cancellation was requested; not acking", task.id, task.method)
            return
        if self._abandon.is_set() or not r.claim_report():
            return
        self._report(task.id, outcome, r)

    def _report_once(self, task_id: str, outcome: Outcome, deadline: float) -> None:
        holder = _Deadline(deadline)
        self._report(task_id, outcome, holder)

    def _report(self, task_id: str, outcome: Outcome, r: Any) -> None:
        """Ack or fail, retrying connection errors until the lease would have expired (after
        that the appliance answers 409 anyway and hands the run out again)."""
        s = self.settings
        backoff = Backoff(s.backoff_base_s, s.backoff_cap_s, s.max_retry_after_s, self._rng)
        while True:
            try:
                if isinstance(outcome, Success):
                    self.client.ack(task_id, outcome.result_json)
                    log.info("task %s: acked", task_id)
                else:
                    self.client.fail(task_id, outcome.error[:MAX_ERROR_CHARS], outcome.retry)
                    log.info("task %s: failed (%s): %s", task_id, "will be retried" if outcome.retry else "permanent", outcome.error)
                return
            except LeaseLost as err:
                log.warning("%s; the appliance hands the run out again", err)
                return
            except ApiError as err:
                log.error("%s", err)
                return
            except Unavailable as err:
                delay = backoff.next_delay(err.retry_after)
                if time.monotonic() + delay >= r.deadline or self._abandon.is_set():
                    log.warning("%s; giving up: the lease expires first and the run is handed out again", err)
                    return
                log.warning("%s; retrying in %.1f s", err, delay)
                self._sleep(delay, self._abandon)


class _Deadline:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
