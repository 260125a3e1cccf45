"""``python -m appliance_handler``: signals, exit codes, messages."""

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import support
from appliance_handler import __main__ as cli
from fake_appliance import FakeAppliance


def start(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([support.PACKAGE_ROOT, support.HERE])
    env.pop("APPLIANCE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "appliance_handler", *args],
        cwd=support.HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def main_in_process(args):
    """Run the CLI's main() here (argparse mistakes exit through SystemExit)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exit:
            code = exit.code
    return code, err.getvalue()


class CliTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeAppliance().start()
        self.addCleanup(self.fake.stop)

    def finish(self, proc, timeout=5):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail(f"the CLI did not exit in {timeout} s; stderr:\n{err}")
        return proc.returncode, err

    def test_sigterm_finishes_the_running_task_then_exits_0(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        started = os.path.join(tmp.name, "started")
        run_id = self.fake.enqueue("nap", {"s": 0.8, "started": started})
        proc = start("cli_fixture:Sleeper", "--url", self.fake.url, "--lease-s", "5")
        deadline = time.monotonic() + 5
        while not os.path.exists(started) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertTrue(os.path.exists(started), "the method never started")
        proc.send_signal(signal.SIGTERM)
        code, err = self.finish(proc)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.fake.run(run_id).state, "done", err)
        self.assertEqual(self.fake.run(run_id).result, "rested")
        self.assertIn("SIGTERM: no new tasks; finishing 1 running task(s)", err)

    def test_sigint_while_idle_exits_promptly(self):
        proc = start("cli_fixture:Sleeper", "--url", self.fake.url, "--wait-s", "60")
        self.assertTrue(self.fake.wait_for(lambda: self.fake.paths("/tasks/lease")))
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code, err = self.finish(proc)
        self.assertEqual(code, 0, err)
        self.assertLess(time.monotonic() - started, 2)

    def test_usage_mistakes_exit_2_before_contacting_the_appliance(self):
        cases = [
            (["cli_fixture:Sleeper", "--concurrency", "0"], "--concurrency must be from 1 to 100"),
            (["cli_fixture:Sleeper", "--lease-s", "4"], "--lease-s must be from 5 to 3600"),
            (["cli_fixture:Sleeper", "--wait-s", "soon"], "--wait-s must be a whole number from 0 to 60"),
            (["cli_fixture"], "is not MODULE:CLASS"),
            (["no_such_module:Bot"], "cannot import 'no_such_module'"),
            (["cli_fixture:Missing"], "has no 'Missing'"),
            (["cli_fixture:NotAHandler"], "is not a subclass of appliance_handler.Handler"),
            (["cli_fixture:Sleeper", "--url", "10.88.88.1"], "url: '10.88.88.1' is not an http:// URL"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                if "--url" not in args:
                    args = args + ["--url", self.fake.url]
                code, err = main_in_process(args)
                self.assertEqual(code, 2, err)
                self.assertIn(message, err)
        self.assertEqual(self.fake.requests, [])

    def test_refused_registration_exits_1_with_the_reason(self):
        self.fake.inject("register", 403, body={"error": {"code": "forbidden_role", "message": "role handler needed", "field": None}})
        code, err = self.finish(start("cli_fixture:Sleeper", "--url", self.fake.url))
        self.assertEqual(code, 1, err)
        self.assertIn("the appliance refused register (PUT /api/v1/handler): HTTP 403 forbidden_role", err)
        self.assertIn("appliance peer add NAME --role handler", err)


if __name__ == "__main__":
    unittest.main()
