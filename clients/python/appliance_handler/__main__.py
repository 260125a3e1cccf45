"""``python -m appliance_handler module:Class``: run a handler class.

Layer: CLI edge. Exit status: 0 after a clean stop (SIGINT/SIGTERM), 2 for a usage or
validation mistake (bad option, module not importable, class not a ``Handler``), 1 when the
appliance refuses the handler for a reason retrying cannot fix (e.g. the peer's role is not
``handler``). Connection problems are not fatal: the handler retries with backoff.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import ApiError, SettingsError
from .handler import Handler
from .settings import Settings, default_url


class UsageError(Exception):
    """A command-line mistake; exits 2."""


def _bounded(kind, low, high, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"{what} must be a {noun} from {low} to {high}, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m appliance_handler",
        description="Serve a Handler subclass: register its methods with the appliance, lease "
        "tasks, heartbeat while they run, ack or fail them. Stops on SIGINT/SIGTERM after the "
        "running tasks finish (a second signal abandons them).",
    )
    p.add_argument("target", metavar="MODULE:CLASS",
                   help="the handler class, e.g. examples.ding_dong_handler:DingDongHandler or "
                   "path/to/bot.py:DiscordHandler; built with no arguments")
    p.add_argument("--url", default=default_url(),
                   help="the appliance API (default: $APPLIANCE_URL or http://10.88.88.1:8888)")
    p.add_argument("--concurrency", type=_bounded(int, 1, 100, "--concurrency"), default=1,
                   help="worker threads, i.e. tasks run at once (1-100, default 1)")
    p.add_argument("--lease-s", type=_bounded(int, 5, 3600, "--lease-s"), default=60,
                   help="lease length in seconds; heartbeats every third of it (5-3600, default 60)")
    p.add_argument("--wait-s", type=_bounded(int, 0, 60, "--wait-s"), default=30,
                   help="long-poll time of one lease request (0-60, default 30)")
    p.add_argument("--dedupe-size", type=_bounded(int, 0, 1_000_000, "--dedupe-size"), default=1000,
                   help="completed run ids remembered to ack redeliveries without rerunning (default 1000)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"appliance_handler {__version__}")
    return p


def load_class(target: str) -> type:
    module_name, sep, class_name = target.rpartition(":")
    if not sep or not module_name or not class_name:
        raise UsageError(f"'{target}' is not MODULE:CLASS (e.g. examples.ding_dong_handler:DingDongHandler)")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            if not os.path.isfile(module_name):
                raise UsageError(f"no such file: {module_name}")
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(module_name))[0], module_name)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(f"cannot import '{module_name}': {type(err).__name__}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UsageError(f"module '{module_name}' has no '{class_name}'")
    if not (isinstance(cls, type) and issubclass(cls, Handler)):
        raise UsageError(f"'{target}' is not a subclass of appliance_handler.Handler")
    return cls


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cls = load_class(args.target)
        settings = Settings(url=args.url, concurrency=args.concurrency, lease_s=args.lease_s,
                            wait_s=args.wait_s, dedupe_size=args.dedupe_size)
        try:
            handler = cls()
        except Exception as err:
            raise UsageError(f"cannot build {cls.__name__}(): {type(err).__name__}: {err}") from None
    except (UsageError, SettingsError) as err:
        print(f"python -m appliance_handler: error: {err}", file=sys.stderr)
        return 2
    logging.getLogger("appliance_handler").info(
        "serving %s at %s (concurrency %d, lease %d s)", args.target, settings.url,
        settings.concurrency, settings.lease_s)
    try:
        handler.run(settings)
    except ApiError as err:
        print(f"python -m appliance_handler: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
