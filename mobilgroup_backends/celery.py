"""Celery tasks: send SMS from a worker fleet, exactly once, and poll delivery reports from beat.

Importing this module registers two shared tasks with every Celery app::

    from mobilgroup_backends.celery import enqueue

    request_id = enqueue("+7 903 123-45-67", "Your code is 4521")   # store it with the order

- ``"mobilgroup.send_sms"`` ``(outgoing=...)``: the message as the core prepared it
  (``Outgoing.to_dict()``), JSON only.
- ``"mobilgroup.track_due"``: for Celery beat; asks for the delivery reports that are due
  (needs the Django app ``mobilgroup_backends.django``, which keeps the requests to track).

Exactly once: the core prepares the message in :func:`enqueue` (every setting applied, the request
id minted) before anything is queued, and every execution of the task sends it as it is, with
``resend=True``. Whatever runs the task again (a retry, the
broker redelivering after a worker was killed, a message restored after the visibility timeout),
the gateway sees the same id and answers a copy with error 7, which the client takes as
"accepted earlier": the message goes out once.

The worker's client is made once per worker process through the core's resolver: the Celery
setting ``mobilgroup_secret_url`` (the adapter's own URL), over Django's ``MOBILGROUP`` when the
worker has set Django up, over ``MOBILGROUP_URL`` and the ``MOBILGROUP_*`` variables. A forked
pool child makes its own.

The setting's name has ``secret`` in it because Celery shows every other setting as it is:
``celery report``, ``celery inspect conf`` (whose reply travels through the broker) and
``app.conf.humanize(censored=True)`` mask only names matching ``SECRET``, ``PASS``, ``KEY``,
``TOKEN``, ``API``... The older ``mobilgroup_url`` still works, with a warning in the log.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery, Task, current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from .client import MobilgroupClient, backoff_delay
from .config import Resolved, Settings, django_setting, resolve_cached
from .errors import ConfigurationError, MobilgroupError, Verdict
from .outgoing import LongMessages, Outgoing

__all__ = [
    "MAX_RETRIES",
    "SEND_TASK",
    "SOFT_TIME_LIMIT",
    "TRACK_TASK",
    "enqueue",
    "send_sms",
    "track_due",
    "worker_client",
]

SEND_TASK = "mobilgroup.send_sms"
TRACK_TASK = "mobilgroup.track_due"

#: Task-level retries after the client's own attempts failed (the gateway down for a while).
MAX_RETRIES = 8
#: The first task retry waits about this long; each next one twice as long, up to MAX_RETRY_DELAY.
RETRY_BACKOFF = 5.0
MAX_RETRY_DELAY = 600.0
#: One execution is at most a few client exchanges (timeout x attempts, plus their backoff).
#: Both limits stay far below the Redis broker's default visibility timeout (3600 s): a task
#: still running when that timeout ends would be handed to a second worker.
SOFT_TIME_LIMIT = 120
TIME_LIMIT = 150
#: Redis and SQS redeliver an unacknowledged message after this many seconds (kombu's default).
DEFAULT_VISIBILITY_TIMEOUT = 3600.0

#: The Celery setting with the gateway URL; Celery censors it (see the module's docstring).
CELERY_URL_SETTING = "mobilgroup_secret_url"
#: Its former name, which Celery shows in full; read when the new one is not set.
OLD_URL_SETTING = "mobilgroup_url"

logger = logging.getLogger("mobilgroup_backends.celery")


# --- the worker's client -----------------------------------------------------------------------

_clients_lock = threading.Lock()


@dataclass
class _WorkerClient:
    """A client, the settings it was made for, and how many running tasks use it (a thread or
    gevent pool runs several at once in one process)."""

    settings: Settings
    client: MobilgroupClient
    users: int = 0
    replaced: bool = False


#: This process's client for each Celery app (a worker has one app; tests and tools may have more).
_clients: weakref.WeakKeyDictionary[Celery, _WorkerClient] = weakref.WeakKeyDictionary()
_clients_pid = os.getpid()


def _forget_clients() -> None:
    """In a forked child: the parent's clients (and their sockets) are not this process's.

    Dropped, not closed: closing would shut sockets the parent still uses.
    """
    global _clients, _clients_pid
    _clients, _clients_pid = weakref.WeakKeyDictionary(), os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients)


def _resolved(app: Celery) -> Resolved:
    """The settings through the core's resolver: the Celery setting ``mobilgroup_secret_url``
    (or its old name ``mobilgroup_url``) as this adapter's URL, over Django's ``MOBILGROUP``
    (when the worker set Django up), over ``MOBILGROUP_URL`` and the ``MOBILGROUP_*`` variables.
    Asked on every task: the core remembers the answer until one of those changes."""
    source = CELERY_URL_SETTING
    url = app.conf.get(CELERY_URL_SETTING) or None
    if url is None:
        url = app.conf.get(OLD_URL_SETTING) or None
        if url is not None:
            source = OLD_URL_SETTING
            _warn_old_setting()
    return resolve_cached("client", url=None if url is None else str(url),
                          setting=django_setting(), url_source=source)


@functools.cache
def _warn_old_setting() -> None:
    """Once per process: the old name puts the password where Celery shows it."""
    logger.warning("The Celery setting %s is shown in full by celery report and celery inspect "
                   "conf, password included: rename it %s, which Celery masks, or give the URL "
                   "in the MOBILGROUP_URL environment variable", OLD_URL_SETTING,
                   CELERY_URL_SETTING)


def _settings(app: Celery) -> Settings:
    return _resolved(app).settings


def worker_client(app: Celery | None = None) -> MobilgroupClient:
    """This process's client for ``app`` (default the current app), made on first use and made
    again when the settings change. The one it replaces is closed (its pooled connections) as
    soon as no task of this module is running with it: at once in a prefork child, which runs
    one task at a time; after the last running task in a thread or gevent pool. Code of your own
    that keeps a client from here across a settings change keeps a working client (it reconnects
    when asked), just not the current settings."""
    return _current(app or current_app).client


def _current(app: Celery, *, use: bool = False) -> _WorkerClient:
    """The entry for ``app``'s current settings; ``use`` counts a task using it (under the lock,
    so that no other thread closes it in between)."""
    settings = _settings(app)
    retired: _WorkerClient | None = None
    with _clients_lock:
        if _clients_pid != os.getpid():  # forked without the hook (a platform without it)
            _forget_clients()
        current = _clients.get(app)
        if current is None or current.settings != settings:
            if current is not None:
                current.replaced = True
                retired = current if current.users == 0 else None
            current = _clients[app] = _WorkerClient(settings,
                                                    MobilgroupClient.from_settings(settings))
        current.users += use
    if retired is not None:
        retired.client.close()
    return current


@contextmanager
def _task_client(app: Celery) -> Iterator[MobilgroupClient]:
    """The worker's client for the length of one task: a client replaced meanwhile is closed
    when its last task ends, not under a running one."""
    entry = _current(app, use=True)
    try:
        yield entry.client
    finally:
        with _clients_lock:
            entry.users -= 1
            close = entry.replaced and entry.users == 0
        if close:
            entry.client.close()


# --- sending -----------------------------------------------------------------------------------


def _visibility_timeout(app: Celery) -> float:
    options = app.conf.get("broker_transport_options") or {}
    value = options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
    return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_VISIBILITY_TIMEOUT


def retry_countdown(app: Celery, retries: int) -> float:
    """Seconds before the next execution: the client's backoff, kept to a quarter of the broker's
    visibility timeout.

    On Redis a worker holds a message with a countdown unacknowledged until it is due; one held
    longer than the visibility timeout is handed to another worker as well, and then again and
    again. The request id would keep those copies from being sent twice, but not from piling up.
    """
    cap = min(MAX_RETRY_DELAY, _visibility_timeout(app) / 4)
    return backoff_delay(RETRY_BACKOFF, retries + 1, cap=cap)


@shared_task(name=SEND_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT, max_retries=MAX_RETRIES,
             serializer="json")
def send_sms(self: Task[Any, Any], /, request_id: int | None = None,
             phones: list[str] | None = None, text: str | None = None, *,
             outgoing: dict[str, Any] | None = None, **send_options: Any) -> dict[str, Any]:
    """Send one queued message as the core prepared it; safe to run any number of times.

    :func:`enqueue` passes ``outgoing``, the prepared message (``Outgoing.to_dict()``: every
    setting applied, the request ids minted); it is sent as it is, with ``resend=True``.
    Messages queued by an older version (``request_id, phones, text, **send_options``) are
    prepared here under their own id.

    What a failure does is the error's own verdict
    (:attr:`~mobilgroup_backends.errors.MobilgroupError.verdict`), nothing else:

    - ``retry``/``unknown`` (no answer, a garbled answer, HTTP 5xx, the soft time limit): run
      again after the core's backoff, kept under the broker's visibility timeout;
    - ``account`` (errors 3, 4, 5, 9: credentials, a blocked account, no money): the account's
      work pauses: run again with the same backoff, up to ``MAX_RETRIES`` times, so a message
      goes out once the account is fixed in that time;
    - ``refused``/``invalid`` (a 404 endpoint, an untrusted certificate, bad phones, a wrong
      setting): the task fails at once with the reason logged: running it again would be
      refused again.

    When the worker has set Django up with the app ``mobilgroup_backends.django`` and the
    ``track_delivery`` setting is on, the accepted requests are recorded for delivery tracking
    (``mobilgroup.track_due`` then polls their reports), once however often the task runs.
    """
    try:
        with _task_client(self.app) as client:
            message = (Outgoing.from_dict(outgoing) if outgoing is not None else
                       client.prepare(phones or [], text or "", request_id=request_id,
                                      **send_options))
            sent = client.send_prepared(message, resend=True)
    except SoftTimeLimitExceeded as exc:
        raise self.retry(exc=exc, countdown=retry_countdown(self.app, self.request.retries)) from None
    except MobilgroupError as exc:
        verdict = exc.verdict
        if verdict.try_again or verdict is Verdict.ACCOUNT:
            raise self.retry(exc=exc,
                             countdown=retry_countdown(self.app, self.request.retries)) from None
        logger.error("SMS request %s not sent, not retried (%s): %s",
                     exc.request_id or request_id, verdict, exc)
        raise
    try:
        tracked = _record_for_tracking(self.app, message)
    except _NotRecorded as failure:
        # Run again: the resend is answered "accepted earlier" and the record is written then.
        if self.request.retries < (self.max_retries or 0):
            raise self.retry(exc=failure.error,
                             countdown=retry_countdown(self.app, self.request.retries)) from None
        logger.error("SMS request %s sent but not recorded for delivery tracking after %d runs: %s",
                     message.request_ids[0], self.request.retries + 1,
                     type(failure.error).__name__)
        tracked = False
    return {**sent.to_dict(), "request_id": sent.request_ids[0],
            "attempts": max(result.attempts for result in sent),
            "accepted_earlier": any(result.accepted_earlier for result in sent),
            "tracked": tracked}


class _NotRecorded(Exception):
    """The database refused the tracking record for a reason that may pass (a lost connection,
    a lock timeout): worth running the task again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _record_for_tracking(app: Celery, outgoing: Outgoing) -> bool:
    """Record an accepted message for the Django app's delivery tracking, when it is there and
    ``track_delivery`` is on; True when it is recorded (now or by an earlier run of the task).

    A database error raises :class:`_NotRecorded` (the task runs again: its resend is answered
    "accepted earlier" and records then); any other failure is logged and not retried, since
    running again would fail the same way.
    """
    if not _django_ready() or not _resolved(app)["track_delivery"]:
        return False
    from django.db import DatabaseError, IntegrityError

    from .django.models import SmsRequest
    from .django.tracking import record_sent

    try:
        if SmsRequest.objects.filter(request_id=outgoing.request_ids[0]).exists():
            return True  # an earlier run of this task, which sent it, recorded it
        record_sent(outgoing)
    except IntegrityError:
        return True  # a run of the same task at the same moment recorded it
    except DatabaseError as exc:
        raise _NotRecorded(exc) from exc
    except Exception as exc:
        logger.error("SMS request %s sent but not recorded for delivery tracking: %s",
                     outgoing.request_ids[0], type(exc).__name__)
        return False
    return True


def enqueue(phones: str | Iterable[str], text: str, *, app: Celery | None = None,
            sender: str | None = None, transliterate: bool | None = None,
            schedule: datetime | str | None = None, valid_hours: int | None = None,
            long_messages: LongMessages | None = None,
            replace_unencodable: bool | None = None) -> int:
    """Prepare the message, queue ``mobilgroup.send_sms`` with it; return its request id.

    The core prepares it (:meth:`MobilgroupClient.prepare`) with this app's settings (the Celery
    setting ``mobilgroup_url``, Django's ``MOBILGROUP``, the environment, as the worker reads
    them); options left None take those settings, the URL's ``region``, ``valid``, ``translit``
    and ``sender`` included. The task gets the prepared message as JSON and sends it as it is.
    Bad input raises :class:`~mobilgroup_backends.errors.ValidationError` here, in the caller,
    and nothing is queued. Keep the returned id with your record: it is the key for the delivery
    report, and for a safe resend. A text sent in several parts is one task; the id returned is
    the first part's.
    """
    app = app or current_app
    outgoing = _current(app).client.prepare(
        phones, text, sender=sender, transliterate=transliterate, schedule=schedule,
        valid_hours=valid_hours, long_messages=long_messages,
        replace_unencodable=replace_unencodable)
    app.tasks[SEND_TASK].apply_async((), {"outgoing": outgoing.to_dict()}, serializer="json")
    return outgoing.request_ids[0]


# --- delivery reports ----------------------------------------------------------------------------


def _django_ready() -> bool:
    """True when Django is imported and its apps are loaded (never imports Django itself)."""
    apps_module = sys.modules.get("django.apps")
    registry = getattr(apps_module, "apps", None)
    return bool(registry is not None and registry.ready
                and registry.is_installed("mobilgroup_backends.django"))


@shared_task(name=TRACK_TASK, bind=True, acks_late=True, soft_time_limit=SOFT_TIME_LIMIT,
             time_limit=TIME_LIMIT, serializer="json")
def track_due(self: Task[Any, Any], /, limit: int | None = None) -> dict[str, Any]:
    """Ask once for every delivery report that is due, and record it (Celery beat calls this).

    The requests to track live in the Django app's tables; this needs ``mobilgroup_backends.django``
    in ``INSTALLED_APPS`` of a configured Django (as a Celery app set up for Django has). Several
    workers may run it at once: each request is claimed by one of them.
    """
    if not _django_ready():
        raise ConfigurationError(
            "track_due", "Django", "delivery tracking needs the Django app, which is not loaded",
            'add "mobilgroup_backends.django" to INSTALLED_APPS and set up Django in the Celery '
            "app (django.setup()), or run manage.py mobilgroup track instead")
    from .django.tracking import track

    with _task_client(self.app) as client:
        return track(client, limit=limit).to_dict()
