"""Where the alert budget, the dedupe memory and the pending summary live.

:class:`LocalStore` keeps them in this process (the default: every process has its own budget).
:class:`RedisStore` keeps them in Redis under one key, so that every process and host using that
key shares one budget: ``SmsHandler(..., budget="redis://HOST:PORT/DB?key=shop-prod")``. Each
decision is one Lua call, timed by the Redis server's own clock, so hosts whose clocks disagree
still share one window. When Redis cannot be reached the store falls back to a local budget,
says so in one line on stderr, and tries Redis again a little later.

Both are used by the handler's worker thread alone: nothing here is thread-safe, nothing here
runs in the thread that logs.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..config import redact_url
from ..errors import ConfigurationError
from .worker import write_stderr

if TYPE_CHECKING:
    import redis

__all__ = ["Decision", "Item", "LocalStore", "Pending", "RedisStore", "Store", "Verdict",
           "make_store"]


class Item(NamedTuple):
    """One record as the alert needs it, already formatted in the caller's thread."""

    created: float
    levelno: int
    levelname: str
    name: str
    message: str
    exception: str
    formatted: str | None

    @property
    def fingerprint(self) -> str:
        """What makes two alerts "the same" for dedupe: level, logger and message."""
        key = f"{self.levelno}\0{self.name}\0{self.message}".encode("utf-8", "replace")
        return hashlib.sha256(key).hexdigest()[:32]


class Pending:
    """Records not delivered (held by the budget, failed, dropped): the next summary's content."""

    __slots__ = ("count", "last", "levelno", "since")

    def __init__(self) -> None:
        self.count = 0
        self.since = 0.0
        self.levelno = 0
        self.last: Item | None = None

    def add(self, item: Item, count: int = 1, since: float | None = None) -> None:
        first = item.created if since is None else since
        if self.count == 0 or first < self.since:
            self.since = first
        self.count += count
        self.levelno = max(self.levelno, item.levelno)
        if self.last is None or item.created >= self.last.created:
            self.last = item


class Verdict(enum.Enum):
    SEND = "send"            # a budget slot is reserved for it: send it now
    DUPLICATE = "duplicate"  # the same alert went out within the dedupe window
    SUPPRESSED = "suppressed"  # the budget is spent: counted for the summary
    HELD = "held"            # sending is paused after failures: counted for the summary


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    repeats: int = 0           # copies deduplicated since this alert last went out
    reservation: Any = None    # what release() needs to give the slot back


class Store(Protocol):
    def admit(self, item: Item, *, paused: bool) -> Decision: ...
    def release(self, item: Item, decision: Decision) -> None: ...
    def defer(self, item: Item, count: int = 1, since: float | None = None) -> None: ...
    def flush_repeats(self) -> None: ...
    def summary_wait(self) -> float | None: ...
    def claim_summary(self, *, final: bool) -> tuple[Pending, Any] | None: ...
    def unclaim(self, pending: Pending, reservation: Any) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Seen:
    """Dedupe memory of one alert: when it last went out and how often it repeated since."""

    sent_at: float
    repeats: int = 0
    #: The newest repeat, for the summary at exit when no later copy reported the repeats.
    last: Item | None = None


class LocalStore:
    """The budget, dedupe memory and summary of this process alone, on the policy's clock."""

    def __init__(self, *, max_sms: int, per_seconds: float, dedupe_seconds: float,
                 dedupe_size: int, clock: Callable[[], float]) -> None:
        self.max_sms = max_sms
        self.per_seconds = per_seconds
        self.dedupe_seconds = dedupe_seconds
        self.dedupe_size = dedupe_size
        self.clock = clock
        self.sent_at: deque[float] = deque()
        self.seen: OrderedDict[str, _Seen] = OrderedDict()
        self.pending = Pending()

    def budget_opens(self, now: float) -> float:
        """When the next SMS may go (``now`` when it may go now)."""
        sent = self.sent_at
        while sent and now - sent[0] >= self.per_seconds:
            sent.popleft()
        return now if len(sent) < self.max_sms else sent[0] + self.per_seconds

    def admit(self, item: Item, *, paused: bool) -> Decision:
        now = self.clock()
        key = item.fingerprint
        seen = self.seen.get(key)
        if seen is not None and self.dedupe_seconds > 0 and now - seen.sent_at < self.dedupe_seconds:
            seen.repeats += 1
            seen.last = item
            self.seen.move_to_end(key)
            return Decision(Verdict.DUPLICATE)
        if paused or self.budget_opens(now) > now:
            self.pending.add(item)
            return Decision(Verdict.HELD if paused else Verdict.SUPPRESSED)
        self.sent_at.append(now)
        self.seen[key] = _Seen(now)
        self.seen.move_to_end(key)
        while len(self.seen) > self.dedupe_size:
            self.seen.popitem(last=False)
        return Decision(Verdict.SEND, seen.repeats if seen is not None else 0, (now, seen))

    def release(self, item: Item, decision: Decision) -> None:
        at, previous = decision.reservation
        with contextlib.suppress(ValueError):
            self.sent_at.remove(at)
        key = item.fingerprint
        if previous is None:
            self.seen.pop(key, None)
        else:
            self.seen[key] = previous

    def defer(self, item: Item, count: int = 1, since: float | None = None) -> None:
        self.pending.add(item, count, since)

    def flush_repeats(self) -> None:
        """Count repeats that no later copy reported in the summary (at exit), so that 999
        repeats of one alert are never silently lost."""
        for seen in self.seen.values():
            if seen.repeats and seen.last is not None:
                self.pending.add(seen.last, seen.repeats)
                seen.repeats = 0

    def summary_wait(self) -> float | None:
        if self.pending.count == 0:
            return None
        now = self.clock()
        return self.budget_opens(now) - now

    def claim_summary(self, *, final: bool) -> tuple[Pending, Any] | None:
        """The pending summary, taken, when the budget has room for it (at close: always)."""
        pending = self.pending
        if pending.count == 0 or pending.last is None:
            return None
        now = self.clock()
        if not final and self.budget_opens(now) > now:
            return None
        self.sent_at.append(now)
        self.pending = Pending()
        return pending, now

    def unclaim(self, pending: Pending, reservation: Any) -> None:
        """A summary that could not be sent: its slot back, its records pending again."""
        with contextlib.suppress(ValueError):
            self.sent_at.remove(reservation)
        if pending.last is not None:
            self.pending.add(pending.last, pending.count, pending.since)
        self.pending.levelno = max(self.pending.levelno, pending.levelno)

    def close(self) -> None:
        pass


# --- Redis: one budget for the whole fleet --------------------------------------------------------

#: One decision per call, atomic, on the Redis server's clock (TIME inside the script), so that
#: hosts whose clocks disagree still share one window.
#: KEYS: sent (sorted set of reserved slots), pending (hash: the summary's content), summary (set
#: while a summary went out in this window), fingerprint (set while an alert is deduplicated),
#: repeats (copies deduplicated since it last went out, from every process).
#: ARGV: op, max_sms, window ms, dedupe ms, slot id, flag (paused / final), item JSON, created,
#: levelno, count, since, repeats to give back.
#: The ``repeats`` op (at exit) takes every remembered alert at once: KEYS[6...] their repeat
#: counters, ARGV[13...] for each its item JSON, created and levelno.
_SCRIPT = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, max_sms = ARGV[1], tonumber(ARGV[2])
local window, dedupe = tonumber(ARGV[3]), tonumber(ARGV[4])
local slot, flag = ARGV[5], ARGV[6]

local function used()
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  return redis.call('ZCARD', KEYS[1])
end
local function wait_ms()
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if oldest[2] == nil then return 0 end
  return math.max(0, tonumber(oldest[2]) + window - now)
end
local function reserve()
  redis.call('ZADD', KEYS[1], now, slot)
  redis.call('PEXPIRE', KEYS[1], window + 1000)
end
local function defer_item(count, last, created, levelno, since)
  redis.call('HINCRBY', KEYS[2], 'count', count)
  local old = tonumber(redis.call('HGET', KEYS[2], 'since'))
  if old == nil or tonumber(since) < old then redis.call('HSET', KEYS[2], 'since', since) end
  old = tonumber(redis.call('HGET', KEYS[2], 'levelno'))
  if old == nil or tonumber(levelno) > old then redis.call('HSET', KEYS[2], 'levelno', levelno) end
  old = tonumber(redis.call('HGET', KEYS[2], 'created'))
  if old == nil or tonumber(created) >= old then
    redis.call('HSET', KEYS[2], 'created', created, 'last', last)
  end
  -- Kept a day past its window: a summary nobody could claim is not kept for ever.
  redis.call('PEXPIRE', KEYS[2], window + 86400000)
end
local function defer(count)
  defer_item(count, ARGV[7], ARGV[8], ARGV[9], ARGV[11])
end

if op == 'admit' then
  if dedupe > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('INCR', KEYS[5])
    redis.call('PEXPIRE', KEYS[5], dedupe * 4 + window)
    return {'duplicate', 0, 0}
  end
  if flag == '1' then
    defer(tonumber(ARGV[10]))
    return {'held', 0, 0}
  end
  if used() >= max_sms then
    defer(tonumber(ARGV[10]))
    return {'suppressed', 0, wait_ms()}
  end
  reserve()
  if dedupe > 0 then redis.call('SET', KEYS[4], '1', 'PX', dedupe) end
  local repeats = tonumber(redis.call('GET', KEYS[5]) or '0')
  redis.call('DEL', KEYS[5])
  return {'send', repeats, 0}
elseif op == 'release' then
  redis.call('ZREM', KEYS[1], slot)
  redis.call('DEL', KEYS[4])
  if tonumber(ARGV[12]) > 0 then redis.call('INCRBY', KEYS[5], tonumber(ARGV[12])) end
  return {'ok', 0, 0}
elseif op == 'defer' then
  defer(tonumber(ARGV[10]))
  return {'ok', 0, 0}
elseif op == 'repeats' then
  -- At a handler's exit: the copies deduplicated since each alert last went out, which no later
  -- copy will report, go into the summary (each taken once, whichever process asks first).
  local total = 0
  for i = 6, #KEYS do
    local repeats = tonumber(redis.call('GET', KEYS[i]) or '0')
    if repeats > 0 then
      redis.call('DEL', KEYS[i])
      local at = 13 + (i - 6) * 3
      defer_item(repeats, ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 1])
      total = total + repeats
    end
  end
  return {'ok', total, 0}
elseif op == 'claim' then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {'empty', 0, 0} end
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'wait', 0, redis.call('PTTL', KEYS[3])} end
  if flag ~= '1' then
    if used() >= max_sms then return {'wait', 0, wait_ms()} end
    reserve()
  end
  redis.call('SET', KEYS[3], '1', 'PX', window)
  local content = redis.call('HGETALL', KEYS[2])
  redis.call('DEL', KEYS[2])
  return {'summary', 0, 0, content}
elseif op == 'unclaim' then
  redis.call('ZREM', KEYS[1], slot)
  redis.call('DEL', KEYS[3])
  defer(tonumber(ARGV[10]))
  return {'ok', 0, 0}
end
return redis.error_reply('unknown operation ' .. op)
"""

#: How long Redis is left alone after it failed (the local budget is used meanwhile).
RETRY_REDIS_AFTER = 30.0
#: Redis is asked from the handler's thread, but an alert should not wait long for it either.
REDIS_TIMEOUT = 0.5

_SCHEMES = ("redis", "rediss", "unix")


def _item_json(item: Item) -> str:
    return json.dumps(item._asdict(), ensure_ascii=False)


def _item_from(text: bytes | str) -> Item:
    return Item(**json.loads(text))


class RedisStore:
    """One budget, dedupe memory and summary for every process using ``key`` on one Redis.

    Falls back to a :class:`LocalStore` while Redis is unreachable (one line on stderr per
    outage), and tries Redis again after :data:`RETRY_REDIS_AFTER` seconds.
    """

    def __init__(self, url: str, key: str, *, max_sms: int, per_seconds: float,
                 dedupe_seconds: float, dedupe_size: int, clock: Callable[[], float],
                 client: redis.Redis | None = None) -> None:
        self.url = url
        self.key = key
        self.max_sms = max_sms
        self.window_ms = max(1, int(per_seconds * 1000))
        self.dedupe_ms = int(dedupe_seconds * 1000)
        self.clock = clock
        self.local = LocalStore(max_sms=max_sms, per_seconds=per_seconds,
                                dedupe_seconds=dedupe_seconds, dedupe_size=dedupe_size, clock=clock)
        self._client = client
        self._script: Any = None
        self._down_until: float | None = None
        self._due: float | None = None  # when a summary known to be pending may be claimed
        self._slots = 0
        #: The alerts this process saw deduplicated through Redis (the newest copy of each): at
        #: exit their repeats go into the summary, as a local store's do.
        self._repeated: OrderedDict[str, Item] = OrderedDict()
        self._repeated_size = dedupe_size
        # One hash slot for every key of a budget: a Redis Cluster runs the script too.
        self._prefix = f"mobilgroup:alerts:{{{key}}}"

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r}, key={self.key!r})"

    # --- talking to Redis -------------------------------------------------------------------

    def _connect(self) -> Any:
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                retry_on_timeout=False)
        if self._script is None:
            self._script = self._client.register_script(_SCRIPT)
        return self._script

    def _call(self, op: str, item: Item | None = None, *, flag: bool = False, slot: str = "",
              count: int = 1, since: float | None = None, repeats: int = 0,
              remembered: Sequence[Item] = ()) -> list[Any] | None:
        """One script call; None when Redis is down (the caller then uses the local store).
        ``remembered``: the alerts whose repeats the ``repeats`` op takes, all in this call."""
        if self._down_until is not None and self.clock() < self._down_until:
            return None
        fingerprint = item.fingerprint if item is not None else "-"
        keys = [f"{self._prefix}:{name}" for name in
                ("sent", "pending", "summary", f"fp:{fingerprint}", f"rep:{fingerprint}")]
        created = item.created if item is not None else 0.0
        args = [op, self.max_sms, self.window_ms, self.dedupe_ms, slot, "1" if flag else "0",
                _item_json(item) if item is not None else "", repr(created),
                item.levelno if item is not None else 0, count,
                repr(created if since is None else since), repeats]
        for other in remembered:
            keys.append(f"{self._prefix}:rep:{other.fingerprint}")
            args += [_item_json(other), repr(other.created), other.levelno]
        try:
            result: list[Any] = self._connect()(keys=keys, args=args)
        except Exception as exc:  # any failure of Redis or its client: never into the app
            self._fall_back(exc)
            return None
        if self._down_until is not None:
            self._down_until = None
        return result

    def _fall_back(self, exc: BaseException) -> None:
        first = self._down_until is None
        self._down_until = self.clock() + RETRY_REDIS_AFTER
        self._script = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if first:
            write_stderr(f"SmsHandler: the shared alert budget at {redact_url(self.url)} is "
                    f"unreachable ({type(exc).__name__}); using this process's own budget, "
                    f"trying again every {RETRY_REDIS_AFTER:g} s\n")

    def _new_slot(self) -> str:
        self._slots += 1
        return f"{id(self):x}-{time.time_ns()}-{self._slots}"

    # --- the store --------------------------------------------------------------------------

    def admit(self, item: Item, *, paused: bool) -> Decision:
        slot = self._new_slot()
        result = self._call("admit", item, flag=paused, slot=slot)
        if result is None:
            decision = self.local.admit(item, paused=paused)
            return Decision(decision.verdict, decision.repeats, ("local", decision))
        verdict = Verdict(_text(result[0]))
        if verdict is Verdict.SUPPRESSED or verdict is Verdict.HELD:
            self._expect_summary(int(result[2]) / 1000)
        elif verdict is Verdict.DUPLICATE:
            self._remember_repeated(item)
        elif verdict is Verdict.SEND:
            self._repeated.pop(item.fingerprint, None)  # its repeats go out with it
        return Decision(verdict, int(result[1]), ("redis", slot, int(result[1])))

    def release(self, item: Item, decision: Decision) -> None:
        where, *rest = decision.reservation
        if where == "local":
            self.local.release(item, rest[0])
            return
        slot, repeats = rest
        # If Redis went away meanwhile, the slot simply expires with its window.
        self._call("release", item, slot=slot, repeats=repeats)
        if repeats:  # given back to Redis: this process reports them at exit if no copy does
            self._remember_repeated(item)

    def _remember_repeated(self, item: Item) -> None:
        """Keep ``item`` to report its repeats at exit: the newest ``dedupe_size`` alerts."""
        self._repeated[item.fingerprint] = item
        self._repeated.move_to_end(item.fingerprint)
        while len(self._repeated) > self._repeated_size:
            self._repeated.popitem(last=False)

    def defer(self, item: Item, count: int = 1, since: float | None = None) -> None:
        if self._call("defer", item, count=count, since=since) is None:
            self.local.defer(item, count, since)
        else:
            self._expect_summary(0.0)

    def flush_repeats(self) -> None:
        """At exit: the repeats no later copy reported go into the summary, as in a local store.

        Repeats are counted in Redis for the whole fleet and reported by the next copy that goes
        out, from any process; one that exits moves the count of every alert it saw repeated
        into the fleet's pending summary (each count taken once, by one process), which its
        final summary then carries, or the fleet's next one when this window had its summary.
        """
        self.local.flush_repeats()
        if not self._repeated:
            return
        # One call for all of them: at exit every round trip counts against flush_timeout.
        result = self._call("repeats", remembered=tuple(self._repeated.values()))
        if result is None:
            return  # Redis is gone: the counts stay there, for the next copies to report
        self._repeated.clear()
        if int(result[1]) > 0:
            self._expect_summary(0.0)

    def _expect_summary(self, wait: float) -> None:
        """Records are pending in Redis: try to claim their summary in ``wait`` seconds."""
        due = self.clock() + wait
        self._due = due if self._due is None else min(self._due, due)

    def summary_wait(self) -> float | None:
        waits = [wait for wait in (self.local.summary_wait(),
                                   None if self._due is None else self._due - self.clock())
                 if wait is not None]
        return min(waits) if waits else None

    def claim_summary(self, *, final: bool) -> tuple[Pending, Any] | None:
        local = self.local.claim_summary(final=final)
        if local is not None:
            return local[0], ("local", local[1])
        if not final and (self._due is None or self._due > self.clock()):
            return None
        slot = self._new_slot()
        result = self._call("claim", flag=final, slot=slot)
        if result is None:
            return None
        state = _text(result[0])
        if state == "empty":
            self._due = None
            return None
        if state == "wait":
            self._due = self.clock() + max(int(result[2]), 0) / 1000
            return None
        self._due = None
        fields = {_text(k): v for k, v in zip(result[3][::2], result[3][1::2], strict=True)}
        pending = Pending()
        pending.add(_item_from(fields["last"]), int(fields["count"]), float(fields["since"]))
        pending.levelno = max(pending.levelno, int(fields["levelno"]))
        return pending, ("redis", None if final else slot)

    def unclaim(self, pending: Pending, reservation: Any) -> None:
        where, slot = reservation
        if where == "local":
            self.local.unclaim(pending, slot)
            return
        if pending.last is not None and self._call(
                "unclaim", pending.last, slot=slot or "", count=pending.count,
                since=pending.since) is None:
            self.local.unclaim(pending, None)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_budget(budget: str) -> tuple[str, str]:
    """``redis://HOST:PORT/DB?key=NAME`` as the URL for the Redis client and the key name."""
    shown = redact_url(budget) if isinstance(budget, str) else type(budget).__name__
    parts = urlsplit(budget) if isinstance(budget, str) else None
    if parts is None or parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            "budget", shown, "not a Redis URL",
            "give budget='redis://HOST:PORT/DB?key=NAME' for one budget shared through Redis, "
            "or leave it unset for this process's own")
    query = parse_qsl(parts.query, keep_blank_values=True)
    keys = [value for name, value in query if name == "key"]
    key = keys[-1].strip() if keys else "default"
    if not key or any(c in key for c in "{}\0 "):
        raise ConfigurationError("budget", shown, f"key={key!r} is not a usable name",
                                 "give ?key= a short name without spaces or braces, e.g. shop-prod")
    rest = "&".join(f"{name}={value}" for name, value in query if name != "key")
    return urlunsplit(parts._replace(query=rest)), key


def make_store(budget: str | None, *, max_sms: int, per_seconds: float, dedupe_seconds: float,
               dedupe_size: int, clock: Callable[[], float]) -> Store:
    """The store ``budget`` names: None or ``"local"`` for this process's own, else Redis."""
    if budget is None or budget == "local":
        return LocalStore(max_sms=max_sms, per_seconds=per_seconds,
                          dedupe_seconds=dedupe_seconds, dedupe_size=dedupe_size, clock=clock)
    url, key = parse_budget(budget)
    return RedisStore(url, key, max_sms=max_sms, per_seconds=per_seconds,
                      dedupe_seconds=dedupe_seconds, dedupe_size=dedupe_size, clock=clock)
