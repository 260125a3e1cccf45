"""Pure parts: method discovery, calling convention, settings, backoff, task parsing, dedupe."""

import random
import unittest

import support  # noqa: F401  (sys.path)
from appliance_handler import Handler, Settings, SettingsError
from appliance_handler.backoff import Backoff
from appliance_handler.client import parse_retry_after
from appliance_handler.dedupe import RecentRuns
from appliance_handler.handler import call_method
from appliance_handler.task import MalformedTask, Task, parse_lease, parse_task


class Bot(Handler):
    greeting = "hi"  # not callable: not a method

    def __init__(self):
        self.seen = []

    def send_message(self, params):
        return params

    def no_params(self):
        return "none"

    def _helper(self):
        pass

    @staticmethod
    def tool(params):
        return params


class DiscoveryTest(unittest.TestCase):
    def test_public_callables_are_methods_base_api_is_not(self):
        methods = Bot()._discover_methods()
        self.assertEqual(sorted(methods), ["no_params", "ping", "send_message", "tool"])

    def test_ping_is_always_registered_and_answers(self):
        methods = Handler()._discover_methods()
        self.assertEqual(list(methods), ["ping"])
        self.assertEqual(methods["ping"]({}), {"message": "pong"})

    def test_methods_are_called_with_params_only_when_they_take_them(self):
        bot = Bot()
        self.assertEqual(call_method(bot.send_message, {"a": 1}), {"a": 1})
        self.assertEqual(call_method(bot.no_params, {"a": 1}), "none")


class SettingsTest(unittest.TestCase):
    def test_defaults_point_at_the_tunnel(self):
        s = Settings()
        self.assertEqual(s.url, "http://10.88.88.1:8888")
        self.assertAlmostEqual(s.heartbeat_every_s, 20)

    def test_bad_values_name_their_field(self):
        cases = [
            ({"concurrency": 0}, "concurrency"),
            ({"concurrency": 101}, "concurrency"),
            ({"lease_s": 0}, "lease_s"),
            ({"lease_s": 3601}, "lease_s"),
            ({"wait_s": 61}, "wait_s"),
            ({"dedupe_size": -1}, "dedupe_size"),
            ({"url": "10.88.88.1:8888"}, "url"),
            ({"url": "http://10.88.88.1:8888/api"}, "url"),
            ({"backoff_cap_s": 0.1}, "backoff_cap_s"),
        ]
        for kwargs, field in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(SettingsError) as ctx:
                    Settings(**kwargs)
                self.assertEqual(ctx.exception.field, field)
                self.assertIn(field, str(ctx.exception))

    def test_trailing_slash_is_dropped(self):
        self.assertEqual(Settings(url="http://10.88.88.1:8888/").url, "http://10.88.88.1:8888")


class BackoffTest(unittest.TestCase):
    def test_doubles_with_jitter_up_to_the_cap_and_resets(self):
        b = Backoff(base=1, cap=8, max_retry_after=60, rng=random.Random(3))
        delays = [b.next_delay() for _ in range(6)]
        nominal = [1, 2, 4, 8, 8, 8]
        for d, n in zip(delays, nominal):
            self.assertGreaterEqual(d, n / 2)
            self.assertLessEqual(d, n)
        self.assertEqual(len(set(delays)), 6, "jitter makes every delay different")
        b.reset()
        self.assertLessEqual(b.next_delay(), 1)

    def test_same_seed_same_delays(self):
        a = Backoff(1, 30, 60, random.Random(9))
        b = Backoff(1, 30, 60, random.Random(9))
        self.assertEqual([a.next_delay() for _ in range(5)], [b.next_delay() for _ in range(5)])

    def test_retry_after_wins_and_is_clamped(self):
        b = Backoff(1, 8, max_retry_after=60, rng=random.Random(1))
        self.assertEqual(b.next_delay(retry_after=17), 17)
        self.assertEqual(b.next_delay(retry_after=3600), 60)

    def test_retry_after_header_forms(self):
        self.assertEqual(parse_retry_after("5"), 5.0)
        self.assertIsNone(parse_retry_after(None))
        self.assertIsNone(parse_retry_after("soon"))
        self.assertEqual(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0.0)


class TaskParsingTest(unittest.TestCase):
    def test_a_complete_task(self):
        t = parse_task({"id": 7, "job_id": 3, "run_id": 99, "method": "m", "params": {"x": 1},
                        "attempt": 2, "lease_expires_at": "2026-01-01T00:00:00Z"})
        self.assertEqual(t, Task("7", "3", "99", "m", {"x": 1}, 2, "2026-01-01T00:00:00Z"))

    def test_entries_that_cannot_be_used(self):
        self.assertEqual(parse_task([]).id, None)
        self.assertEqual(parse_task({"run_id": "r"}).id, None)
        bad = parse_task({"id": "t1", "job_id": "j", "run_id": "r"})
        self.assertIsInstance(bad, MalformedTask)
        self.assertEqual(bad.id, "t1")
        self.assertIn("method", bad.reason)

    def test_lease_body_shape(self):
        self.assertEqual(parse_lease({"tasks": []}), [])
        with self.assertRaises(ValueError):
            parse_lease({"task": []})


class RecentRunsTest(unittest.TestCase):
    def test_keeps_the_last_n(self):
        runs = RecentRuns(2)
        runs.remember("a", "1")
        runs.remember("b", "2")
        runs.remember("c", "3")
        self.assertIsNone(runs.get("a"))
        self.assertEqual(runs.get("c"), "3")
        self.assertEqual(len(runs), 2)

    def test_zero_remembers_nothing(self):
        runs = RecentRuns(0)
        runs.remember("a", "1")
        self.assertIsNone(runs.get("a"))


if __name__ == "__main__":
    unittest.main()
