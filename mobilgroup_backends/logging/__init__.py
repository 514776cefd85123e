"""``SmsHandler``: ``logger.critical("payments down")`` puts a short SMS on the on-call phone.

Configured from ``logging.config.dictConfig`` or Django's ``LOGGING`` alone::

    "handlers": {
        "sms": {
            "class": "mobilgroup_backends.logging.SmsHandler",
            "url": "mobilgroup://LOGIN:PASSWORD@USER_ID/79031234567?sender=Alerts",
            "prefix": "web1",
        },
    }

What the handler promises, because an alert path must never hurt the application it watches:

- **It never blocks the caller.** ``emit`` formats the record in the caller's thread and puts a
  small tuple on a bounded queue; a full queue costs a counter, not a wait. The network is used
  only by one daemon worker thread, started on the first record.
- **It never raises into the caller.** Problems go through ``handleError`` (caller side) or one
  line on stderr per failure burst (worker side).
- **It never floods.** At most ``max_sms`` SMS per ``per_seconds`` (per process, or for a whole
  fleet with ``budget="redis://..."``); what the budget holds back is
  counted and, when the window reopens, one summary SMS tells how many and shows the last one.
  The same message within ``dedupe_seconds`` is sent once; the next copy says how often it
  repeated.
- **It never loops.** Records made while the handler sends (in its worker thread, or from the
  ``urllib3``, ``requests`` and ``mobilgroup_backends`` loggers) are never queued.
- **It never hangs the exit.** ``flush`` and ``close`` wait at most ``flush_timeout``; the worker
  is a daemon thread, so a stalled gateway cannot keep the process alive.
- **It survives fork** (gunicorn, uWSGI, Celery prefork): a child gets its own queue and worker.
- **It never leaks the password**: not in its repr, its stderr lines or its exceptions.

Configuration goes through the core's resolver, with the precedence every adapter shares:
keywords > ``url`` > Django's ``settings.MOBILGROUP`` (read when Django is already imported and
configured: this module never imports Django itself) > ``MOBILGROUP_URL`` > ``MOBILGROUP_*`` >
the defaults, which for alerts are short: 5 s timeout, 1 retry.

The package is three parts: :mod:`.worker` (the queue and the thread), :mod:`.policy` (which
record becomes an SMS, and its text) with :mod:`.store` (where the budget lives: this process, or
Redis), and the handler (:mod:`.handler`) that wires them to ``logging``.
"""

from .handler import _LIVE_HANDLERS as _LIVE_HANDLERS  # the fork tests reach for it
from .handler import HandlerStats, SmsHandler

__all__ = ["HandlerStats", "SmsHandler"]
