"""A message ready to send: every setting applied once, its request ids minted, plain data.

:func:`prepare` turns (phones, text, options) into an :class:`Outgoing`: the phones read with the
region, the sender alias, transliteration, the lifetime, the schedule, a long text split (in at
most ``max_parts`` parts, the last cut) or cut (:func:`protocol.message_parts`) or refused,
unencodable characters replaced or refused, and one request id per part.
``MobilgroupClient.prepare`` calls it with the client's settings; every adapter stores, forwards
and sends the result as it is (``MobilgroupClient.send_prepared``), and applies no setting itself.

An :class:`Outgoing` is JSON-safe (:meth:`Outgoing.to_dict`, :meth:`Outgoing.from_dict`): outbox
rows, task arguments and the mailing state file keep it as it is, so that a resend is the very
message, under the very ids, that may have gone out before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from . import protocol
from .errors import ValidationError

__all__ = ["LongMessages", "Outgoing", "Part", "prepare"]

LongMessages = Literal["error", "split", "truncate"]
_LONG_MESSAGES = ("error", "split", "truncate")


@dataclass(frozen=True)
class Part:
    """One gateway request of a message: its request id and its text (as it goes out)."""

    request_id: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "text": self.text}


@dataclass(frozen=True)
class Outgoing:
    """One message exactly as the gateway will get it, one request per part.

    ``account`` is the client id it was prepared for (never the login or the password): sending
    it through a client of another account is refused. ``phones`` are international digits;
    ``schedule`` is the gateway's ``YYYY-MM-DD HH:MM`` in Moscow time; ``sender`` None means the
    account's default alias; ``valid_hours`` None means the gateway's default (1 hour).
    """

    account: str
    phones: tuple[str, ...]
    parts: tuple[Part, ...]
    sender: str | None = None
    transliterate: bool = True
    valid_hours: int | None = None
    schedule: str | None = None

    @property
    def request_ids(self) -> tuple[int, ...]:
        return tuple(part.request_id for part in self.parts)

    @property
    def text(self) -> str:
        """The parts' texts joined by a space: what the recipient reads, near enough."""
        return " ".join(part.text for part in self.parts)

    @property
    def schedule_time(self) -> datetime | None:
        """``schedule`` as an aware moment (the gateway's clock, Moscow time), or None."""
        if self.schedule is None:
            return None
        return protocol.schedule_time(self.schedule)

    def report_due(self, sent_at: datetime) -> datetime:
        """When the gateway's rule allows asking for this message's delivery report, had it
        been accepted at ``sent_at`` (aware): its lifetime, counted from the schedule when it
        was scheduled for later (:func:`protocol.report_due`)."""
        return protocol.report_due(sent_at, self.valid_hours, self.schedule_time)

    def without(self, request_ids: Iterable[int]) -> Outgoing:
        """The same message minus the parts whose ids are given (those accepted already)."""
        done = set(request_ids)
        return replace(self, parts=tuple(p for p in self.parts if p.request_id not in done))

    def with_request_ids(self, request_ids: Sequence[int | str]) -> Outgoing:
        """The same message under other ids, one per part in order: ids derived from what the
        message stands for (an alert's identity), so that a retry made from scratch, in any
        process, is the same request and goes out once. Known only once the parts are."""
        ids = [protocol.check_request_id(one) for one in request_ids]
        if len(ids) != len(self.parts):
            raise ValidationError("request_id", ",".join(map(str, ids)),
                                  f"the message has {len(self.parts)} part(s), each needs its "
                                  f"own id ({len(ids)} given)",
                                  f"give {len(self.parts)} ids, one per part")
        if len(set(ids)) != len(ids):
            raise ValidationError("request_id", ",".join(map(str, ids)),
                                  "the same id given for two parts", "give every part its own id")
        return replace(self, parts=tuple(Part(i, part.text)
                                         for i, part in zip(ids, self.parts, strict=True)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; :meth:`from_dict` reads them back."""
        return {"account": self.account, "phones": list(self.phones),
                "parts": [part.to_dict() for part in self.parts], "sender": self.sender,
                "transliterate": self.transliterate, "valid_hours": self.valid_hours,
                "schedule": self.schedule}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outgoing:
        """An :class:`Outgoing` from :meth:`to_dict`'s shape, checked again field by field (a
        stored row may have been edited by hand); a ``ValidationError`` names what is wrong."""
        if not isinstance(data, Mapping):
            raise ValidationError("outgoing", type(data).__name__, "not a mapping",
                                  "give what Outgoing.to_dict() returned")
        missing = sorted({"account", "phones", "parts"} - set(data))
        if missing:
            raise ValidationError("outgoing", missing, "missing field(s)",
                                  "give what Outgoing.to_dict() returned")
        transliterate = data.get("transliterate", True)
        if not isinstance(transliterate, bool):
            raise ValidationError("outgoing.transliterate", transliterate, "not true or false",
                                  "give what Outgoing.to_dict() returned")
        account = str(data["account"])
        if not (account.isascii() and account.isdigit()):
            raise ValidationError("outgoing.account", account, "not a client id",
                                  "give what Outgoing.to_dict() returned")
        raw_phones = data["phones"]
        if isinstance(raw_phones, str) or not isinstance(raw_phones, Sequence):
            raise ValidationError("outgoing.phones", raw_phones, "not a list of phones",
                                  "give what Outgoing.to_dict() returned")
        # Stored in international form: read them as such, whatever the region now is.
        phones = protocol.normalize_phones([f"+{str(p).lstrip('+')}" for p in raw_phones])
        raw_parts = data["parts"]
        if not isinstance(raw_parts, Sequence) or not raw_parts:
            raise ValidationError("outgoing.parts", raw_parts, "no part to send",
                                  "give what Outgoing.to_dict() returned")
        parts = []
        for part in raw_parts:
            if not isinstance(part, Mapping) or not {"request_id", "text"} <= set(part):
                raise ValidationError("outgoing.parts", part, "not a {request_id, text} pair",
                                      "give what Outgoing.to_dict() returned")
            parts.append(Part(protocol.check_request_id(part["request_id"]),
                              protocol.check_text(part["text"], transliterate=transliterate)))
        return cls(account=account, phones=phones, parts=tuple(parts),
                   sender=protocol.check_sender(data.get("sender")),
                   transliterate=transliterate,
                   valid_hours=protocol.check_valid_hours(data.get("valid_hours")),
                   schedule=protocol.check_schedule(data.get("schedule")))


def prepare(
    phones: str | Iterable[Any],
    text: str,
    *,
    account: str,
    region: str = protocol.DEFAULT_REGION,
    sender: str | None = None,
    transliterate: bool = True,
    schedule: datetime | str | None = None,
    valid_hours: int | None = None,
    long_messages: LongMessages = "error",
    max_parts: int | None = None,
    replace_unencodable: bool = False,
    request_id: int | str | Sequence[int | str] | None = None,
) -> Outgoing:
    """The message the gateway will get, every argument already resolved (no defaults here:
    ``MobilgroupClient.prepare`` fills them from its settings).

    With ``long_messages="split"`` a long text goes out in at most ``max_parts`` parts (None: as
    many as it takes), the last cut with an ellipsis; ``truncate`` is the one-part case.

    Everything is checked before anything is sent: a ``ValidationError`` means nothing went out
    (its ``request_id`` is the first id given, when one was). Without ``request_id`` each part
    gets a fresh id; with one, the message must go out in one part; a sequence of ids gives one
    per part, in order (how a message sent in parts before is made again, under the same ids,
    to resend it).
    """
    if long_messages not in _LONG_MESSAGES:
        raise ValidationError("long_messages", long_messages, "not one of split, truncate, error",
                              "use 'split', 'truncate' or 'error'")
    if request_id is None:
        given: list[int] = []
    elif isinstance(request_id, (int, str)):
        given = [protocol.check_request_id(request_id)]
    else:
        given = [protocol.check_request_id(one) for one in request_id]
    # Minted before the checks, so that a refusal names the message it refused.
    rid = given[0] if given else protocol.new_request_id()
    try:
        if not isinstance(text, str):
            raise ValidationError("text", text, "the message text must be a string",
                                  "pass the text as str")
        pieces = protocol.message_parts(text, transliterate=transliterate,
                                        long_messages=long_messages, max_parts=max_parts)
        checked = protocol.check_message(
            phones, pieces[0], sender=sender, transliterate=transliterate, schedule=schedule,
            valid_hours=valid_hours, replace_unencodable=replace_unencodable, region=region)
        texts = [checked.text] + [
            protocol.check_text(piece, transliterate=transliterate, replace=replace_unencodable)
            for piece in pieces[1:]]
        if given and len(given) != len(texts):
            raise ValidationError(
                "request_id", ",".join(map(str, given)),
                (f"the text goes out as {len(texts)} messages, each needs its own id "
                 f"({len(given)} given)") if len(texts) > 1 else
                f"the text goes out as one message, which takes one id ({len(given)} given)",
                f"leave request_id out (each part gets its own), or give {len(texts)} ids",
                hints={"cli": f"leave --id out (each part gets its own), or give {len(texts)} "
                              f"ids separated by commas"})
        if len(set(given)) != len(given):
            raise ValidationError("request_id", ",".join(map(str, given)),
                                  "the same id given for two parts",
                                  "give every part its own id")
    except ValidationError as exc:
        exc.request_id = rid  # nothing was sent; the id still names the message refused
        raise
    ids = given or [rid] + [protocol.new_request_id() for _ in texts[1:]]
    return Outgoing(account=account, phones=checked.phones,
                    parts=tuple(Part(i, t) for i, t in zip(ids, texts, strict=True)),
                    sender=checked.sender, transliterate=checked.transliterate,
                    valid_hours=checked.valid_hours, schedule=checked.schedule)
