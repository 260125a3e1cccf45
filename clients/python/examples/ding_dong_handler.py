"""DingDongHandler: ScheduleZero's clock-chime test handler, ported to the appliance.

What changed from ScheduleZero's ``tests/ding_dong_handler.py``: the base class
(``ZMQHandlerBase`` → ``appliance_handler.Handler``) and the configuration (no handler
address, server address, ports or registration retries: the handler is the WireGuard peer it
connects through, and it pulls its work from ``http://10.88.88.1:8888``). The methods keep
their names and their ``params`` dict.

Run it (from clients/python, with the tunnel up):

    python -m appliance_handler examples/ding_dong_handler.py:DingDongHandler

Schedule ``play_hour_bongs`` at minute 0 and ``play_quarter_chime`` with ``{"quarter": 1|2|3}``
at 15/30/45. Sound needs ``winsound`` (Windows), speech ``pyttsx3``; without them the methods
only log. ``DING_DONG_LOG_DIR`` says where the chime log goes (default ``./ding_dong_logs``).

At-least-once: a chime can be delivered twice (e.g. the ack was lost). Each log line carries
the run id, so a repeated run is visible; sounds are harmless to repeat.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    from appliance_handler import Handler
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from appliance_handler import Handler

log = logging.getLogger("ding_dong")

QUARTER_MELODIES = {
    1: [(523, 200), (440, 200), (392, 200), (330, 400)],
    2: [(523, 200), (440, 200), (392, 200), (330, 400), (392, 200), (440, 200), (523, 200), (330, 400)],
    3: [(523, 200), (440, 200), (392, 200), (330, 400)] * 3,
}


class DingDongHandler(Handler):
    """Bongs on the hour, chimes on the quarters, tells the time."""

    def __init__(self) -> None:
        self.log_dir = Path(os.environ.get("DING_DONG_LOG_DIR", "ding_dong_logs"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.chime_log = self.log_dir / "chime_log.txt"
        try:
            import winsound  # type: ignore[import-not-found]

            self._beep = winsound.Beep
        except ImportError:
            self._beep = None
        try:
            import pyttsx3  # type: ignore[import-not-found]

            self._tts = pyttsx3.init()
        except Exception:
            self._tts = None

    def _log_chime(self, what: str) -> None:
        task = self.current_task()
        run = f" run {task.run_id} attempt {task.attempt}" if task else ""
        line = f"{datetime.now(timezone.utc).isoformat()} {what}{run}\n"
        with open(self.chime_log, "a", encoding="utf-8") as f:
            f.write(line)
        log.info("%s", line.strip())

    def _play(self, notes) -> None:
        if self._beep is None:
            return
        for freq, ms in notes:
            self._beep(freq, ms)
            time.sleep(0.05)

    def play_hour_bongs(self, params):
        """``{"hour": 0-23}`` (default: the current UTC hour); 24 bongs at midnight."""
        hour = params.get("hour")
        if hour is None:
            hour = datetime.now(timezone.utc).hour
        hour = int(hour) % 24
        bongs = 24 if hour == 0 else hour
        self._log_chime(f"HOUR BONG x{bongs}")
        self._play([(330, 800)] * bongs)
        return {"type": "hour_bong", "hour": hour, "bong_count": bongs, "audio_played": self._beep is not None}

    def play_quarter_chime(self, params):
        """``{"quarter": 1|2|3}`` for :15, :30, :45."""
        quarter = int(params.get("quarter", 1))
        self._log_chime(f"QUARTER CHIME at :{quarter * 15:02d}")
        self._play(QUARTER_MELODIES.get(quarter, []))
        return {"type": "quarter_chime", "quarter": quarter, "minute": quarter * 15,
                "audio_played": self._beep is not None}

    def announce_time(self, params=None):
        """Say the current UTC time (text-to-speech when pyttsx3 is installed)."""
        now = datetime.now(timezone.utc)
        day = now.day
        suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        text = f"The time is {now.strftime('%I:%M %p')} UTC, {now.strftime('%A, %B')} {day}{suffix}, {now.year}"
        self._log_chime(f"TIME ANNOUNCEMENT: {text}")
        spoken = False
        if self._tts is not None:
            self._tts.say(text)
            self._tts.runAndWait()
            spoken = True
        return {"type": "time_announcement", "announcement": text, "spoken": spoken}

    def get_chime_log(self, params=None):
        """The chime log (the last 32 KiB, so the result stays under the 64 KiB limit)."""
        if not self.chime_log.exists():
            return {"entries": 0, "log": ""}
        text = self.chime_log.read_text(encoding="utf-8")
        return {"entries": text.count("\n"), "log": text[-32 * 1024:]}

    def clear_log(self, params=None):
        if self.chime_log.exists():
            self.chime_log.unlink()
        return {"message": "chime log cleared"}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    DingDongHandler().run()  # $APPLIANCE_URL or http://10.88.88.1:8888
