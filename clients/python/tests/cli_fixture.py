"""Handler classes the CLI tests start with ``python -m appliance_handler cli_fixture:...``
(PYTHONPATH carries the package)."""

import time

from appliance_handler import Handler


class Sleeper(Handler):
    def nap(self, params):
        if "started" in params:  # tells the test the method is running
            open(params["started"], "w").close()
        time.sleep(params.get("s", 0))
        return "rested"


class NotAHandler:
    def nap(self, params):
        return None
