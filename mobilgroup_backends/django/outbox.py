"""The durable outbox: SMS written in the caller's transaction, sent by a task, swept if lost.

::

    from mobilgroup_backends.django.outbox import enqueue

    with transaction.atomic():
        order.save()
        enqueue(order.phone, f"Order {order.number} confirmed")

:func:`enqueue` mints the gateway request id, writes an :class:`OutboxMessage` row in the
caller's transaction and, once that transaction commits, queues the task
``mobilgroup_backends.django.tasks.send_outboxed`` with the row's primary key. Every row written
in one transaction is queued in one batch (``send_outboxed_batch``, ``MOBILGROUP['OUTBOX_BATCH']``
rows a task), whichever API wrote it and in however many savepoints. A rolled-back transaction or
savepoint leaves no row and queues nothing; a committed row is never lost, because the row is
there even when the queueing or the worker fails: :func:`sweep` (``manage.py mobilgroup outbox``)
sends every row left pending too long.

Sending a row (:func:`deliver`, :func:`sweep`) lives in ``dispatch.py``, re-exported here.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, router, transaction
from django.utils import timezone

from ..client import shared_client
from ..errors import ValidationError
from ..outgoing import Outgoing
from .dispatch import DEFAULT_STALE_AFTER, SweepResult, deliver, settings_client, sweep
from .models import OutboxMessage
from .settings import BackendConfig, current_config

__all__ = ["DEFAULT_STALE_AFTER", "Message", "SweepResult", "deliver", "enqueue", "enqueue_many",
           "enqueue_prepared", "enqueue_prepared_many", "requeue", "settings_client", "sweep"]

logger = logging.getLogger("mobilgroup_backends.django.outbox")


def enqueue(phones: str | Iterable[str], text: str, *,
            not_after: datetime | timedelta | None = None, track_delivery: bool | None = None,
            **send_options: Any) -> OutboxMessage:
    """Write a message to the outbox and queue its send once the transaction commits.

    The core prepares it (:meth:`MobilgroupClient.prepare`) with the ``MOBILGROUP`` settings:
    ``send_options`` are ``prepare``'s (``sender``, ``transliterate``, ``schedule``,
    ``valid_hours``, ``long_messages``, ``replace_unencodable``), unset ones the settings'.
    Everything is checked now: a :class:`ValidationError` means nothing was written. A text
    split in parts (``LONG_MESSAGES = "split"``, the default) is one row per part, all written
    here; the first part's row is returned (:func:`enqueue_prepared` returns them all).

    ``not_after`` (a moment, or a delay from now) is when the message stops being worth sending:
    a row still pending then is marked expired instead. ``track_delivery`` defaults to the
    ``TRACK_DELIVERY`` setting. The returned row already carries its ``request_id``, the id
    delivery reports are asked with.
    """
    config = current_config()
    outgoing = shared_client(config.settings).prepare(phones, text, **send_options)
    return _enqueue(outgoing, config, not_after, track_delivery)[0]


def enqueue_prepared(outgoing: Outgoing, *, not_after: datetime | timedelta | None = None,
                     track_delivery: bool | None = None) -> list[OutboxMessage]:
    """Write a message the core prepared to the outbox, one row per part (all or none), and
    queue their send once the transaction commits; the rows, in part order.

    Each row keeps its part as the core made it (``Outgoing.to_dict()``) and is sent as it is.
    A message of one part is one ``INSERT``, as ``OutboxMessage.objects.create`` would make it:
    if it fails inside your transaction, that transaction is as broken as after a failed
    ``create``.
    """
    return _enqueue(outgoing, current_config(), not_after, track_delivery)


def _enqueue(outgoing: Outgoing, config: BackendConfig, not_after: datetime | timedelta | None,
             track_delivery: bool | None) -> list[OutboxMessage]:
    track = config.track_delivery if track_delivery is None else track_delivery
    alias = router.db_for_write(OutboxMessage)
    rows = _rows(outgoing, _moment(not_after), track)
    _write(rows, alias)
    _queue_on_commit([(row.pk, row.request_id) for row in rows], alias, config)
    return rows


#: A message for :func:`enqueue_many`: ``(phones, text)``, a mapping of :func:`enqueue`'s
#: arguments (``phones``, ``text``, ``sender``...), or a message the core prepared.
Message = tuple[Any, str] | Mapping[str, Any] | Outgoing


def enqueue_many(messages: Iterable[Message], *,
                 not_after: datetime | timedelta | None = None,
                 track_delivery: bool | None = None) -> list[OutboxMessage]:
    """Write many messages to the outbox at once, all or none, and queue their send once the
    transaction commits: what :func:`enqueue` does for each, with one ``bulk_create`` and one
    commit hook for them all (thousands of rows cost a few statements, not a few per row).

    Every message is prepared and checked before anything is written: a
    :class:`~mobilgroup_backends.errors.ValidationError` names the message (``messages[3]``) and
    means nothing was written. Returns the rows, message after message, part after part.
    """
    config = current_config()
    client = shared_client(config.settings)
    accepts = inspect.signature(client.prepare)
    prepared: list[Outgoing] = []
    for index, message in enumerate(messages):
        try:
            if isinstance(message, Outgoing):
                outgoing = message
            elif isinstance(message, Mapping):
                try:
                    accepts.bind(**message)
                except TypeError as exc:
                    raise ValidationError("", sorted(map(str, message)), str(exc),
                                          "use the keyword arguments of enqueue()") from None
                outgoing = client.prepare(**message)
            elif isinstance(message, tuple) and len(message) == 2:
                outgoing = client.prepare(*message)
            else:
                raise ValidationError("", type(message).__name__,
                                      "not (phones, text), a mapping of enqueue() arguments nor "
                                      "a prepared message", "give (phones, text) or a mapping")
        except ValidationError as exc:
            field = f"messages[{index}]" + (f".{exc.field}" if exc.field else "")
            raise ValidationError(field, exc.value, exc.problem,
                                  exc.fix, hints=exc.hints, source=exc.source,
                                  option=exc.option) from exc
        prepared.append(outgoing)
    written = enqueue_prepared_many(prepared, config, not_after=not_after,
                                    track_delivery=track_delivery)
    return [row for rows in written for row in rows]


def enqueue_prepared_many(messages: Sequence[Outgoing], config: BackendConfig, *,
                          not_after: datetime | timedelta | None = None,
                          track_delivery: bool | None = None) -> list[list[OutboxMessage]]:
    """Messages the core prepared, written with one bulk insert and queued by one commit hook,
    all or none; each message's rows (:func:`enqueue_prepared`'s), in order. ``config`` is the
    adapter's (:func:`~mobilgroup_backends.django.settings.load_config`)."""
    track = config.track_delivery if track_delivery is None else track_delivery
    moment = _moment(not_after)
    written = [_rows(outgoing, moment, track) for outgoing in messages]
    rows = [row for message_rows in written for row in message_rows]
    if rows:
        alias = router.db_for_write(OutboxMessage)
        _write(rows, alias)
        _queue_on_commit([(row.pk, row.request_id) for row in rows], alias, config)
    return written


def _moment(not_after: datetime | timedelta | None) -> datetime | None:
    return timezone.now() + not_after if isinstance(not_after, timedelta) else not_after


def _rows(outgoing: Outgoing, not_after: datetime | None, track: bool) -> list[OutboxMessage]:
    """The unsaved rows of one message, one per part, each keeping its part as prepared."""
    if len(outgoing.parts) == 1:
        part = outgoing.parts[0]
        return [OutboxMessage(request_id=part.request_id, phones=list(outgoing.phones),
                              text=part.text, outgoing=outgoing.to_dict(), part=1, parts=1,
                              track_delivery=track, not_after=not_after)]
    return [OutboxMessage(
        request_id=part.request_id, phones=list(outgoing.phones), text=part.text,
        outgoing=outgoing.without(p.request_id for p in outgoing.parts if p is not part).to_dict(),
        part=number, parts=len(outgoing.parts), track_delivery=track, not_after=not_after,
    ) for number, part in enumerate(outgoing.parts, start=1)]


#: Rows per INSERT of :func:`enqueue_many` (Django lowers it where the database needs).
BULK_SIZE = 500


def _write(rows: list[OutboxMessage], alias: str) -> None:
    """Insert the rows, all or none, their primary keys set."""
    if len(rows) == 1:
        rows[0].save(force_insert=True, using=alias)  # what objects.create does
        return
    with transaction.atomic(using=alias):  # a half-written text would arrive cut
        OutboxMessage.objects.using(alias).bulk_create(rows, batch_size=BULK_SIZE)
        missing = {row.request_id: row for row in rows if row.pk is None}
        # A database that does not return the new keys from a bulk insert: look them up.
        for pk, request_id in _existing(alias, list(missing)):
            missing[request_id].pk = pk


def requeue(rows: Iterable[OutboxMessage]) -> int:
    """Queue rejected or expired rows again, with their own request ids (the gateway never
    registered them), once the cause is fixed (money added, the account unblocked). Their
    ``not_after`` is cleared and their attempts start again from 0. How many were queued."""
    alias = router.db_for_write(OutboxMessage)
    keys = [(row.pk, row.request_id) for row in rows
            if row.state in (OutboxMessage.REJECTED, OutboxMessage.EXPIRED)]
    with transaction.atomic(using=alias):
        count = int(OutboxMessage.objects.filter(
            pk__in=[pk for pk, _ in keys],
            state__in=(OutboxMessage.REJECTED, OutboxMessage.EXPIRED)).update(
            state=OutboxMessage.PENDING, not_after=None, attempts=0, updated_at=timezone.now()))
        _queue_on_commit(keys, alias, current_config())
    return count


# --- queueing on commit ------------------------------------------------------------------------

_BATCH_ATTRIBUTE = "_mobilgroup_outbox_batch"

#: A row as the batch knows it: its primary key and its request id. The request id tells a row
#: of a rolled-back savepoint from a later row that reused its primary key (SQLite does).
_Key = tuple[int, int]
#: Request ids looked up per query (old SQLite takes at most 999 parameters).
_LOOKUP_CHUNK = 500


def _existing(alias: str, request_ids: list[int]) -> Iterator[_Key]:
    """(pk, request id) of the rows of these request ids that exist, in chunks that every
    database takes."""
    rows = OutboxMessage.objects.using(alias)
    for start in range(0, len(request_ids), _LOOKUP_CHUNK):
        chunk = request_ids[start:start + _LOOKUP_CHUNK]
        yield from rows.filter(request_id__in=chunk).values_list("pk", "request_id")


class _CommitBatch:
    """The rows written in one transaction, queued together once it commits.

    One commit hook per transaction instead of one per row or per savepoint, and one task per
    ``size`` rows: the task backend's own write (a row in the database for django-tasks-db) is
    what an enqueue costs most, and a worker's per-task overhead is paid once per batch.

    Django forgets the hooks of a rolled-back savepoint, so the hook is registered where the
    first row was written, and a row written in a savepoint the hook does not belong to is
    *uncertain*: that savepoint may still roll back without the hook. At commit, the uncertain
    rows are looked up (one query) and only those that exist are queued.
    """

    def __init__(self, connection: Any, size: int, now: bool) -> None:
        self.savepoint_ids = frozenset(connection.savepoint_ids)
        self.size = size
        self.now = now
        self.keys: list[_Key] = []
        self.uncertain: set[_Key] = set()
        self.alias: str = connection.alias

    def alive(self, connection: Any, size: int, now: bool) -> bool:
        """True while the hook is still registered (Django drops it with a rolled-back savepoint
        or transaction, and runs and forgets it at commit)."""
        if size != self.size or now != self.now:
            return False
        hooks = getattr(connection, "run_on_commit", ())  # (savepoints, hook, robust) entries
        # Newest first: usually the last one, as nothing registered a hook since.
        return any(getattr(entry[1], "__self__", None) is self for entry in reversed(hooks))

    def add(self, connection: Any, keys: list[_Key]) -> None:
        self.keys.extend(keys)
        savepoints = connection.savepoint_ids
        if savepoints and not self.savepoint_ids.issuperset(savepoints):
            self.uncertain.update(keys)

    def commit(self) -> None:
        """The commit hook (a bound method: Django 5.2 logs a failing hook's ``__qualname__``)."""
        keys = self.keys
        if self.uncertain:
            try:
                kept = set(_existing(self.alias,
                                     sorted(request_id for _, request_id in self.uncertain)))
            except Exception as exc:
                _not_queued([pk for pk, _ in keys], exc)
                return
            keys = [key for key in keys if key not in self.uncertain or key in kept]
        _dispatch([pk for pk, _ in keys], self.size, self.alias, self.now)



def _queue_on_commit(keys: list[_Key], alias: str, config: BackendConfig) -> None:
    """Queue the send of these committed-to-be rows once the transaction on ``alias`` commits.

    The rows are committed whatever happens to the queueing, and the sweeper sends them if it
    fails (a broker down, a task backend that does not load): the caller's commit must not fail
    for that, so nothing here raises after the commit.
    """
    size, now = config.outbox_batch, config.outbox_send == "now"
    connection = transaction.get_connection(alias)
    if not connection.in_atomic_block:
        # Autocommit: the rows are committed already. (With autocommit turned off by hand,
        # Django refuses on_commit: raise as it always did here.)
        pks = [pk for pk, _ in keys]
        transaction.on_commit(lambda: _dispatch(pks, size, alias, now), using=alias)
        return
    batch = getattr(connection, _BATCH_ATTRIBUTE, None)
    if not (isinstance(batch, _CommitBatch) and batch.alive(connection, size, now)):
        batch = _CommitBatch(connection, size, now)
        setattr(connection, _BATCH_ATTRIBUTE, batch)
        transaction.on_commit(batch.commit, using=alias, robust=True)
    batch.add(connection, keys)


def _dispatch(pks: list[int], size: int, alias: str, now: bool) -> None:
    """Committed rows on their way: to this process's sending threads (``OUTBOX_SEND = "now"``,
    ``sender.py``) or to the task backend. Never raises."""
    if not now:
        _queue_now(pks, size, alias)
        return
    try:
        from .sender import submit

        submit(pks)
    except Exception as exc:  # no thread can start (the interpreter is exiting)
        _not_queued(pks, exc)


def _queue_now(pks: list[int], size: int, alias: str) -> None:
    """One ``send_outboxed`` task per row, or ``send_outboxed_batch`` per ``size`` rows. Never
    raises: a batch that cannot be queued is logged (one line) and left to the sweeper; the
    others are still queued.

    Several tasks are queued in one transaction on ``alias``: a task backend that keeps its tasks
    in that database (django-tasks-db) then writes them all with one commit, not one commit (and,
    on SQLite, one wait for the disk) each. Written straight, with no savepoint each: if one
    fails, that transaction is rolled back and the batches are queued again, each in a savepoint
    of its own, so that only the one that fails is left out. A task backend that keeps its tasks
    elsewhere (a broker, or a database the router sends the task table to) may then get a batch
    twice; each row is still sent once: a task claims its row first. A task run at once whose
    query failed (``ImmediateBackend`` catches the error) counts as a failure too.
    """
    try:
        from .tasks import send_outboxed, send_outboxed_batch
    except Exception as exc:  # the task backend named in TASKS does not load
        _not_queued(pks, exc)
        return
    step = max(1, size)
    chunks = [pks[start:start + step] for start in range(0, len(pks), step)]

    def queue(chunk: list[int]) -> None:
        if len(chunk) == 1:
            send_outboxed.enqueue(chunk[0])
        else:
            send_outboxed_batch.enqueue(chunk)

    if len(chunks) == 1:
        try:
            queue(chunks[0])
        except Exception as exc:
            _not_queued(chunks[0], exc)
        return
    try:
        with transaction.atomic(using=alias):
            for chunk in chunks:
                queue(chunk)
            _raise_if_rolled_back(alias)
        return
    except Exception as exc:
        logger.warning("SMS outbox: queueing the tasks of %d rows failed (%s: %s); queueing "
                       "them again one batch at a time", len(pks), type(exc).__name__, exc)
    queued: list[int] = []
    try:
        with transaction.atomic(using=alias):
            for chunk in chunks:
                try:
                    with transaction.atomic(using=alias):
                        queue(chunk)
                        _raise_if_rolled_back(alias)
                except Exception as exc:
                    _not_queued(chunk, exc)
                else:
                    queued.extend(chunk)
    except Exception as exc:  # the commit of the tasks failed: the sweeper has the rows
        _not_queued(queued, exc)


def _raise_if_rolled_back(alias: str) -> None:
    """Raise when the block is marked for rollback: a task backend that runs tasks at once
    (``ImmediateBackend``) catches a task's failed query, and the block would then end without
    an error and be rolled back in silence, its batches counted as queued."""
    if transaction.get_rollback(using=alias):
        raise DatabaseError("a task failed inside the transaction that queued it; it was "
                            "rolled back")


def _not_queued(pks: list[int], exc: Exception) -> None:
    logger.error("SMS outbox rows %s committed but not queued (%s: %s); they stay pending and "
                 "the sweeper (manage.py mobilgroup outbox) will send them",
                 ",".join(map(str, pks)), type(exc).__name__, exc)
