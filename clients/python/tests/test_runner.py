"""The lease loop against the fake appliance: register, lease, call, heartbeat, ack, fail,
backoff, Retry-After, dedupe, stop."""

import os
import socket
import threading
import time
import unittest
from unittest import mock

import support  # noqa: F401  (puts the package on sys.path)
from support import RecordingSleep, Served
from appliance_handler import ApiError, Handler, PermanentError
from fake_appliance import FakeAppliance


class Bot(Handler):
    def __init__(self, sleep_s=0.0):
        self.calls = []
        self.sleep_s = sleep_s
        self.changed = threading.Condition()

    def _note(self, name, params):
        with self.changed:
            self.calls.append((name, params))
            self.changed.notify_all()

    def wait_calls(self, name, n, timeout=5.0):
        """Wait until ``name`` has been called ``n`` times (the call has started)."""
        with self.changed:
            return self.changed.wait_for(lambda: self.count(name) >= n, timeout)

    def echo(self, params):
        self._note("echo", params)
        return {"echo": params}

    def slow(self, params):
        self._note("slow", params)
        time.sleep(params.get("s", self.sleep_s))
        return {"slept": params.get("s", self.sleep_s)}

    def broken(self, params):
        self._note("broken", params)
        raise ValueError("the channel id is not a number")

    def flaky(self, params):
        self._note("flaky", params)
        if sum(1 for c in self.calls if c[0] == "flaky") == 1:
            raise ConnectionError("discord.com timed out")
        return "second time lucky"

    def permanent(self, params):
        self._note("permanent", params)
        raise PermanentError("channel 42 does not exist")

    def not_json(self, params):
        self._note("not_json", params)
        return {"when": object()}

    def huge(self, params):
        return "x" * (70 * 1024)

    def says_failed(self, params):
        return {"success": False, "error": "rate limited by Discord"}

    def cancellable(self, params):
        self._note("cancellable", params)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.current_task().cancel_requested:
                return "stopped early"
            time.sleep(0.02)
        return "ran to the end"

    def count(self, name):
        with self.changed:
            return sum(1 for c in self.calls if c[0] == name)


class RunnerTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeAppliance().start()
        self.addCleanup(self.fake.stop)

    def done(self, run_id, state="done", timeout=5.0):
        ok = self.fake.wait_for(lambda: self.fake.runs[run_id].state == state, timeout)
        self.assertTrue(ok, f"run {run_id} did not reach {state}: {self.fake.run(run_id)}")
        return self.fake.run(run_id)

    def test_registers_its_methods(self):
        bot = Bot()
        with Served(bot, self.fake.url) as served:
            self.assertTrue(self.fake.wait_for(lambda: self.fake.methods is not None))
            self.assertTrue(self.fake.wait_for(lambda: served.runner.handler_id is not None))
        self.assertEqual(self.fake.methods, sorted(bot._discover_methods()))
        self.assertIn("echo", self.fake.methods)
        self.assertNotIn("run", self.fake.methods)
        self.assertEqual(served.runner.handler_id, "test-bot")

    def test_handler_run_uses_appliance_url_and_stop_ends_it(self):
        bot = Bot()
        run_id = self.fake.enqueue("echo", {"via": "env"})
        with mock.patch.dict(os.environ, {"APPLIANCE_URL": self.fake.url}):
            thread = threading.Thread(target=bot.run, kwargs={"wait_s": 30}, daemon=True)
            thread.start()
            self.done(run_id)
        bot.stop()
        thread.join(5)
        self.assertFalse(thread.is_alive())

    def test_lease_call_ack_with_the_result(self):
        bot = Bot()
        run_id = self.fake.enqueue("echo", {"channel_id": 5, "content": "raid!"})
        with Served(bot, self.fake.url, lease_s=30, wait_s=5):
            run = self.done(run_id)
        self.assertEqual(run.result, {"echo": {"channel_id": 5, "content": "raid!"}})
        self.assertEqual(len(run.acks), 1)
        self.assertEqual(bot.calls, [("echo", {"channel_id": 5, "content": "raid!"})])
        lease = self.fake.bodies("/tasks/lease")[0]
        self.assertEqual(lease, {"wait_s": 5, "max": 1, "lease_s": 30})

    def test_exception_fails_with_retry_and_the_retry_runs(self):
        bot = Bot()
        run_id = self.fake.enqueue("flaky")
        with Served(bot, self.fake.url):
            run = self.done(run_id)
        self.assertEqual(len(run.fails), 1)
        self.assertTrue(run.fails[0]["retry"])
        self.assertIn("ConnectionError: discord.com timed out", run.fails[0]["error"])
        self.assertEqual(run.result, "second time lucky")
        self.assertEqual(run.attempt, 2)

    def test_exception_error_text_names_the_exception(self):
        bot = Bot()
        run_id = self.fake.enqueue("broken")
        with Served(bot, self.fake.url):
            self.assertTrue(self.fake.wait_for(lambda: self.fake.runs[run_id].fails))
        fail = self.fake.run(run_id).fails[0]
        self.assertEqual(fail["error"], "ValueError: the channel id is not a number")
        self.assertTrue(fail["retry"])

    def test_permanent_error_fails_without_retry(self):
        bot = Bot()
        run_id = self.fake.enqueue("permanent")
        with Served(bot, self.fake.url):
            run = self.done(run_id, state="dead")
        self.assertEqual(run.fails, [{"task": run.deliveries[0], "error": "PermanentError: channel 42 does not exist", "retry": False}])
        self.assertEqual(bot.count("permanent"), 1)

    def test_non_json_result_fails_with_a_clear_error(self):
        bot = Bot()
        run_id = self.fake.enqueue("not_json")
        with Served(bot, self.fake.url):
            run = self.done(run_id, state="dead")
        self.assertFalse(run.fails[0]["retry"])
        self.assertIn("not_json returned a result that is not JSON", run.fails[0]["error"])
        self.assertEqual(run.acks, [])

    def test_result_over_64_kib_fails(self):
        run_id = self.fake.enqueue("huge")
        with Served(Bot(), self.fake.url):
            run = self.done(run_id, state="dead")
        self.assertIn("at most 65536", run.fails[0]["error"])

    def test_schedulezero_success_false_is_a_retryable_failure(self):
        run_id = self.fake.enqueue("says_failed")
        with Served(Bot(), self.fake.url):
            self.assertTrue(self.fake.wait_for(lambda: self.fake.runs[run_id].fails))
        self.assertEqual(self.fake.run(run_id).fails[0]["error"], "rate limited by Discord")
        self.assertTrue(self.fake.run(run_id).fails[0]["retry"])

    def test_unknown_method_fails_without_retry(self):
        run_id = self.fake.enqueue("no_such_method")
        with Served(Bot(), self.fake.url):
            run = self.done(run_id, state="dead")
        self.assertIn("no method 'no_such_method'", run.fails[0]["error"])

    def test_long_method_keeps_its_lease_by_heartbeats_and_is_acked_once(self):
        bot = Bot()
        run_id = self.fake.enqueue("slow", {"s": 1.5})
        with Served(bot, self.fake.url, lease_s=0.6):
            run = self.done(run_id)
        self.assertGreaterEqual(run.heartbeats, 3, "2.5 leases long, a heartbeat every 0.2 s")
        self.assertEqual(run.deliveries, run.deliveries[:1], "never redelivered")
        self.assertEqual(run.attempt, 1)
        self.assertEqual(run.acks, run.deliveries)
        self.assertEqual(len(self.fake.paths("/ack")), 1)
        self.assertEqual(bot.count("slow"), 1)

    def test_409_on_heartbeat_stops_the_ack_and_the_redelivery_is_deduped(self):
        bot = Bot()
        run_id = self.fake.enqueue("slow", {"s": 0.5})
        self.fake.revoke_on_heartbeat(run_id)
        with self.assertLogs("appliance_handler", "WARNING") as logs:
            with Served(bot, self.fake.url, lease_s=0.6):
                run = self.done(run_id)
        self.assertTrue(any("finished after its lease was lost; not acking" in line for line in logs.output), logs.output)
        first, second = run.deliveries
        self.assertNotIn(f"/api/v1/tasks/{first}/ack", self.fake.paths("/ack"), "no ack after 409")
        self.assertEqual(run.acks, [second])
        self.assertEqual(run.result, {"slept": 0.5})
        self.assertEqual(bot.count("slow"), 1, "the redelivery was acked without running again")

    def test_redelivery_while_the_first_delivery_still_runs_waits_for_it(self):
        bot = Bot()
        run_id = self.fake.enqueue("slow", {"s": 0.8})
        self.fake.revoke_on_heartbeat(run_id)
        with Served(bot, self.fake.url, lease_s=0.6, concurrency=2):
            run = self.done(run_id)
        first, second = run.deliveries
        self.assertEqual(run.acks, [second])
        self.assertEqual(run.result, {"slept": 0.8})
        self.assertEqual(bot.count("slow"), 1, "the second delivery waited for the first call")

    def test_without_dedupe_a_redelivery_runs_again(self):
        bot = Bot()
        run_id = self.fake.enqueue("slow", {"s": 0.5})
        self.fake.revoke_on_heartbeat(run_id)
        with Served(bot, self.fake.url, lease_s=0.6, dedupe_size=0):
            self.done(run_id)
        self.assertEqual(bot.count("slow"), 2)

    def test_redelivered_completed_run_is_acked_without_running(self):
        bot = Bot()
        run_id = self.fake.enqueue("echo", {"n": 1})
        with Served(bot, self.fake.url):
            self.done(run_id)
            self.fake.redeliver(run_id)
            self.assertTrue(self.fake.wait_for(lambda: len(self.fake.runs[run_id].acks) == 2))
        run = self.fake.run(run_id)
        self.assertEqual(run.acks, run.deliveries)
        self.assertEqual(run.result, {"echo": {"n": 1}})
        self.assertEqual(bot.count("echo"), 1)

    def test_cancel_requested_reaches_the_method_and_stops_the_ack(self):
        bot = Bot()
        run_id = self.fake.enqueue("cancellable")
        self.fake.request_cancel(run_id)
        with self.assertLogs("appliance_handler", "WARNING") as logs:
            with Served(bot, self.fake.url, lease_s=0.3):
                self.assertTrue(self.fake.wait_for(
                    lambda: any("finished after cancellation was requested" in r.getMessage() for r in logs.records)))
        self.assertEqual(self.fake.paths("/ack"), [])
        self.assertEqual(self.fake.paths("/fail"), [])

    def test_concurrency_runs_tasks_side_by_side(self):
        barrier = threading.Barrier(3, timeout=3)

        class Together(Handler):
            def meet(self, params):
                barrier.wait()  # BrokenBarrierError unless three run at once
                return "met"

        runs = [self.fake.enqueue("meet") for _ in range(3)]
        with Served(Together(), self.fake.url, concurrency=3):
            for run_id in runs:
                self.assertEqual(self.done(run_id).result, "met")
        self.assertEqual(self.fake.bodies("/tasks/lease")[0]["max"], 3)

    def test_server_down_backs_off_then_reconnects(self):
        self.fake.stop()
        with socket.socket() as s:  # a port nobody listens on until the fake starts there
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        late = FakeAppliance(port=port)
        self.addCleanup(late.stop)
        run_id = late.enqueue("echo", {"after": "outage"})
        sleep = RecordingSleep(on_call=lambda n: late.start() if n == 4 else None)
        with Served(Bot(), f"http://127.0.0.1:{port}", sleep=sleep, backoff_base_s=1, backoff_cap_s=4):
            self.assertTrue(late.wait_for(lambda: late.runs[run_id].state == "done"))
        d = sleep.delays[:4]
        for delay, nominal in zip(d, [1, 2, 4, 4]):
            self.assertGreaterEqual(delay, nominal / 2)
            self.assertLessEqual(delay, nominal)
        self.assertEqual(len(sleep.delays), 4, "no more waiting once the server is up")
        self.assertIn("echo", late.methods)

    def test_429_and_503_retry_after_are_honoured(self):
        self.fake.inject("register", 503, {"Retry-After": "3"})
        self.fake.inject("lease", 429, {"Retry-After": "7"})
        self.fake.inject("lease", 503)
        run_id = self.fake.enqueue("echo")
        sleep = RecordingSleep()
        with Served(Bot(), self.fake.url, sleep=sleep, backoff_base_s=1):
            self.done(run_id)
        self.assertEqual(sleep.delays[:2], [3, 7])
        self.assertTrue(1 <= sleep.delays[2] <= 2, f"503 without Retry-After: the second failure in a row: {sleep.delays}")
        self.assertEqual(len(sleep.delays), 3)

    def test_registration_refused_is_fatal_with_a_hint(self):
        self.fake.inject("register", 403, body={"error": {"code": "forbidden_role", "message": "role handler needed", "field": None}})
        served = Served(Bot(), self.fake.url)
        with served:
            served.join()
        self.assertIsInstance(served.error, ApiError)
        self.assertEqual(served.error.status, 403)
        self.assertIn("role handler needed", str(served.error))
        self.assertIn("--role handler", str(served.error))
        self.assertEqual(self.fake.paths("/tasks/lease"), [])

    def test_stop_while_idle_returns_promptly(self):
        served = Served(Bot(), self.fake.url, wait_s=30)
        with served:
            self.assertTrue(self.fake.wait_for(lambda: self.fake.paths("/tasks/lease")))
            started = time.monotonic()
            served.stop()
            self.assertLess(time.monotonic() - started, 1.5, "the long poll was cut short")

    def test_stop_finishes_the_running_task_and_leases_no_more(self):
        bot = Bot()
        first = self.fake.enqueue("slow", {"s": 0.5})
        served = Served(bot, self.fake.url, wait_s=30)
        with served:
            self.assertTrue(bot.wait_calls("slow", 1))
            second = self.fake.enqueue("echo")
            served.stop()
        self.assertEqual(self.fake.run(first).state, "done")
        self.assertEqual(self.fake.run(second).state, "available")
        self.assertEqual(len(self.fake.paths("/tasks/lease")), 1)

    def test_abandon_hands_the_running_task_back(self):
        bot = Bot()
        run_id = self.fake.enqueue("slow", {"s": 1.0})
        served = Served(bot, self.fake.url)
        with served:
            self.assertTrue(bot.wait_calls("slow", 1))
            served.stop(abandon=True)
        run = self.fake.run(run_id)
        self.assertEqual(run.fails[0]["retry"], True)
        self.assertIn("shut down", run.fails[0]["error"])
        time.sleep(1.2)  # the method finishes in its (daemon) thread: still no ack
        self.assertEqual(self.fake.paths("/ack"), [])


if __name__ == "__main__":
    unittest.main()
