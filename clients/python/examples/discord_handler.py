"""DiscordHandler: ScheduleZero's Discord handler methods, on the appliance's queue.

Methods (params as in ScheduleZero's ``discord/`` handlers):

- ``send_message {"channel_id", "content"}``
- ``send_embed {"channel_id", "title", "description", "color"}``
- ``update_role {"guild_id", "user_id", "role_id", "action": "add" | "remove"}``

It calls Discord's REST API with the standard library (``DISCORD_TOKEN`` = the bot token), so
it needs neither discord.py nor a gateway connection, and it has no event loop to bridge into
(ScheduleZero's cog waited on the bot loop with ``run_coroutine_threadsafe(...).result(30)``).

At-least-once made safe: messages carry the run id as Discord's ``nonce`` with
``enforce_nonce``, so a redelivered run within Discord's nonce window (a few minutes) returns
the message already posted instead of posting twice; adding or removing a role is idempotent by
itself. Bad params and 401/403/404 from Discord raise ``PermanentError`` (no retry); 429 and 5xx
raise an ordinary error, so the appliance retries with backoff.

Run it (from clients/python, with the tunnel up):

    DISCORD_TOKEN=... python -m appliance_handler examples/discord_handler.py:DiscordHandler
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

try:
    from appliance_handler import Handler, PermanentError
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from appliance_handler import Handler, PermanentError

log = logging.getLogger("discord_handler")

DISCORD_API = "https://discord.com/api/v10"


class DiscordError(Exception):
    """Discord answered 429 or 5xx, or could not be reached: worth retrying."""


class DiscordHandler(Handler):
    def __init__(self) -> None:
        token = os.environ.get("DISCORD_TOKEN")
        if not token:
            raise RuntimeError("set DISCORD_TOKEN to the bot's token (Discord developer portal → Bot)")
        self._token = token
        self._api = os.environ.get("DISCORD_API", DISCORD_API).rstrip("/")

    # -- methods --------------------------------------------------------------------------

    def send_message(self, params):
        channel = _snowflake(params, "channel_id")
        content = _text(params, "content", 2000)
        msg = self._post_message(channel, {"content": content})
        return {"message_id": msg.get("id"), "channel_id": channel}

    def send_embed(self, params):
        channel = _snowflake(params, "channel_id")
        embed = {"title": _text(params, "title", 256),
                 "description": _text(params, "description", 4096, required=False)}
        color = params.get("color")
        if color is not None:
            if isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= 0xFFFFFF:
                raise PermanentError("params.color must be an RGB integer such as 0x5865F2")
            embed["color"] = color
        msg = self._post_message(channel, {"embeds": [embed]})
        return {"message_id": msg.get("id"), "channel_id": channel}

    def update_role(self, params):
        guild = _snowflake(params, "guild_id")
        user = _snowflake(params, "user_id")
        role = _snowflake(params, "role_id")
        action = params.get("action", "add")
        if action not in ("add", "remove"):
            raise PermanentError(f"params.action must be 'add' or 'remove', got {action!r}")
        self._call("PUT" if action == "add" else "DELETE", f"/guilds/{guild}/members/{user}/roles/{role}", None)
        return {"guild_id": guild, "user_id": user, "role_id": role, "action": action}

    # -- Discord REST ---------------------------------------------------------------------

    def _post_message(self, channel: str, body: dict) -> dict:
        task = self.current_task()
        if task is not None:
            body["nonce"] = _nonce(task.run_id)
            body["enforce_nonce"] = True
        return self._call("POST", f"/channels/{channel}/messages", body) or {}

    def _call(self, method: str, path: str, body):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self._api + path, data=data, method=method, headers={
            "Authorization": f"Bot {self._token}",
            "Content-Type": "application/json",
            "User-Agent": "DiscordBot (appliance_handler example, 0.1.0)",
        })
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            if err.code == 429 or err.code >= 500:
                raise DiscordError(f"Discord {method} {path}: HTTP {err.code} {detail} "
                                   f"(retry after {err.headers.get('Retry-After', '?')} s)") from None
            raise PermanentError(f"Discord {method} {path}: HTTP {err.code} {detail}") from None
        except urllib.error.URLError as err:
            raise DiscordError(f"Discord unreachable: {err.reason}") from None
        return json.loads(raw) if raw.strip() else None


def _snowflake(params, name: str) -> str:
    value = params.get(name) if isinstance(params, dict) else None
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        raise PermanentError(f"params.{name} must be a Discord id (digits), got {value!r}")
    return text


def _text(params, name: str, limit: int, required: bool = True) -> str:
    value = params.get(name, "" if not required else None)
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise PermanentError(f"params.{name} must be a non-empty string of at most {limit} characters")
    return value


def _nonce(run_id: str) -> str:
    """Discord nonces are at most 25 characters."""
    return run_id if len(run_id) <= 25 else hashlib.sha256(run_id.encode()).hexdigest()[:25]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    DiscordHandler().run()  # $APPLIANCE_URL or http://10.88.88.1:8888
