"""appliance_handler: run guild bots as handlers of an appliance's durable job queue.

A handler is a WireGuard peer with role ``handler``. It registers its methods, leases tasks,
heartbeats while a method runs, and acks the result or fails the task. Delivery is
at-least-once; see ``docs/handlers.md`` in the appliance repository.

Standard library only, Python 3.9 or newer.
"""

__version__ = "0.1.0"

from .errors import ApiError, LeaseLost, PermanentError, SettingsError, Unavailable  # noqa: E402
from .handler import Handler, TaskContext  # noqa: E402
from .settings import DEFAULT_URL, Settings  # noqa: E402

__all__ = [
    "ApiError",
    "DEFAULT_URL",
    "Handler",
    "LeaseLost",
    "PermanentError",
    "Settings",
    "SettingsError",
    "TaskContext",
    "Unavailable",
    "__version__",
]
