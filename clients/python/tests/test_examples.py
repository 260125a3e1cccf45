"""The ported examples, run against the fake appliance (and a fake Discord API on loopback)."""

import importlib.util
import json
import os
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import support
from support import Served
from fake_appliance import FakeAppliance

EXAMPLES = os.path.join(support.PACKAGE_ROOT, "examples")


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeDiscord:
    """Records requests; answers messages with an id, role changes with 204, unless
    ``self.scripted`` holds (status, body) replies, which are used first, in order."""

    def __init__(self):
        self.requests = []
        self.scripted = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path, self.headers.get("Authorization"),
                                      json.loads(raw) if raw else None))
                if fake.scripted:
                    status, body = fake.scripted.pop(0)
                elif self.command in ("PUT", "DELETE"):
                    status, body = 204, None
                else:
                    status, body = 200, {"id": f"m{len(fake.requests)}"}
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}/api/v10"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class DiscordExampleTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeAppliance().start()
        self.addCleanup(self.fake.stop)
        self.discord = FakeDiscord()
        self.addCleanup(self.discord.stop)
        env = mock.patch.dict(os.environ, {"DISCORD_TOKEN": "tok", "DISCORD_API": self.discord.api})
        env.start()
        self.addCleanup(env.stop)
        self.bot = load_example("discord_handler").DiscordHandler()

    def serve_until(self, run_id, state):
        with Served(self.bot, self.fake.url):
            self.assertTrue(self.fake.wait_for(lambda: self.fake.runs[run_id].state == state))
        return self.fake.run(run_id)

    def test_registers_the_schedulezero_methods(self):
        self.assertEqual(sorted(self.bot._discover_methods()), ["ping", "send_embed", "send_message", "update_role"])

    def test_send_message_uses_the_run_id_as_nonce(self):
        run_id = self.fake.enqueue("send_message", {"channel_id": 123, "content": "raid in 15!"})
        run = self.serve_until(run_id, "done")
        self.assertEqual(run.result, {"message_id": "m1", "channel_id": "123"})
        method, path, auth, body = self.discord.requests[0]
        self.assertEqual((method, path, auth), ("POST", "/api/v10/channels/123/messages", "Bot tok"))
        self.assertEqual(body, {"content": "raid in 15!", "nonce": run_id, "enforce_nonce": True})

    def test_send_embed_and_update_role(self):
        embed = self.fake.enqueue("send_embed", {"channel_id": "5", "title": "Raid", "description": "Thu 20:00", "color": 0x00FF00})
        add = self.fake.enqueue("update_role", {"guild_id": "1", "user_id": "2", "role_id": "3", "action": "add"})
        remove = self.fake.enqueue("update_role", {"guild_id": "1", "user_id": "2", "role_id": "3", "action": "remove"})
        with Served(self.bot, self.fake.url):
            self.assertTrue(self.fake.wait_for(lambda: all(self.fake.runs[r].state == "done" for r in (embed, add, remove))))
        calls = [(m, p) for (m, p, _a, _b) in self.discord.requests]
        self.assertEqual(calls, [("POST", "/api/v10/channels/5/messages"),
                                 ("PUT", "/api/v10/guilds/1/members/2/roles/3"),
                                 ("DELETE", "/api/v10/guilds/1/members/2/roles/3")])
        self.assertEqual(self.discord.requests[0][3]["embeds"], [{"title": "Raid", "description": "Thu 20:00", "color": 0x00FF00}])

    def test_bad_params_fail_without_retry_and_never_reach_discord(self):
        run_id = self.fake.enqueue("send_message", {"channel_id": "general", "content": "hi"})
        run = self.serve_until(run_id, "dead")
        self.assertIn("params.channel_id must be a Discord id", run.fails[0]["error"])
        self.assertEqual(self.discord.requests, [])

    def test_discord_429_is_retried_and_404_is_not(self):
        self.discord.scripted = [(429, {"message": "You are being rate limited."}), (404, {"message": "Unknown Channel"})]
        limited = self.fake.enqueue("send_message", {"channel_id": "1", "content": "x"})
        self.serve_until(limited, "dead")
        first, second = self.fake.run(limited).fails
        self.assertTrue(first["retry"])
        self.assertIn("HTTP 429", first["error"])
        self.assertFalse(second["retry"])
        self.assertIn("HTTP 404", second["error"])


class DingDongExampleTest(unittest.TestCase):
    def test_quarter_chime_is_logged_with_its_run_id(self):
        fake = FakeAppliance().start()
        self.addCleanup(fake.stop)
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        with mock.patch.dict(os.environ, {"DING_DONG_LOG_DIR": tmp.name}):
            bot = load_example("ding_dong_handler").DingDongHandler()
        run_id = fake.enqueue("play_quarter_chime", {"quarter": 2})
        with Served(bot, fake.url):
            self.assertTrue(fake.wait_for(lambda: fake.runs[run_id].state == "done"))
        result = fake.run(run_id).result
        self.assertEqual((result["type"], result["minute"]), ("quarter_chime", 30))
        with open(os.path.join(tmp.name, "chime_log.txt")) as f:
            self.assertIn(f"QUARTER CHIME at :30 run {run_id} attempt 1", f.read())


if __name__ == "__main__":
    unittest.main()
