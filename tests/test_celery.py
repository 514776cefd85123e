"""Celery tasks against a real Redis broker and real worker processes, sending to the emulator."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from celery import Celery

from mobilgroup_backends import celery as mobilgroup_celery
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import TransportError, ValidationError
from tests.celery_app import Worker, make_app
from tests.redis_server import RedisServer


@pytest.fixture
def app(broker: str) -> Celery:
    return make_app(broker)


def _queued(redis_server: RedisServer, broker: str) -> list[dict[str, object]]:
    """The messages waiting in the default queue, as kombu stores them in Redis."""
    db = int(broker.rsplit("/", 1)[1])
    raw = redis_server.client(db).lrange("celery", 0, -1)
    return [json.loads(item) for item in raw]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def test_enqueue_queues_the_message_the_core_prepared_as_json(
        app: Celery, broker: str, redis_server: RedisServer) -> None:
    # The app's own URL says the region, lifetime and transliteration: enqueue applies them
    # through the core, and the worker gets the result as it is.
    app.conf.mobilgroup_secret_url = "mobilgroup://l:p@1000?region=BY&valid=24&translit=no"
    request_id = mobilgroup_celery.enqueue("8 029 123-45-67", "Код 4521", app=app,
                                           sender="Shop")
    [message] = _queued(redis_server, broker)
    assert message["content-type"] == "application/json"
    assert message["headers"]["task"] == "mobilgroup.send_sms"  # type: ignore[index]
    body = json.loads(base64.b64decode(str(message["body"])))
    args, kwargs, _ = body
    assert args == []
    assert kwargs == {"outgoing": {
        "account": "1000", "phones": ["375291234567"],
        "parts": [{"request_id": request_id, "text": "Код 4521"}], "sender": "Shop",
        "transliterate": False, "valid_hours": 24, "schedule": None}}
    assert 10**17 <= request_id < 10**18


def test_the_readme_snippet_runs_as_shown(broker: str, redis_server: RedisServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Celery example, with its broker pointed at this test's Redis and
    ``MOBILGROUP_URL`` set as the README says: it queues the message, prepared, on the app it
    makes (no fall-back to Celery's default broker)."""
    monkeypatch.setenv("MOBILGROUP_URL", "mobilgroup://demo:demo@1000?region=RU")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
                 if "mobilgroup_backends.celery" in block]
    shown_broker = "redis://localhost:6379/0"
    assert shown_broker in snippet
    namespace: dict[str, object] = {}
    exec(snippet.replace(shown_broker, broker), namespace)  # noqa: S102 - the README's own code
    [message] = _queued(redis_server, broker)
    body = json.loads(base64.b64decode(str(message["body"])))
    outgoing = body[1]["outgoing"]
    assert outgoing["parts"][0]["request_id"] == namespace["request_id"]
    assert outgoing["phones"] == ["79031234567"]


@pytest.mark.parametrize(("phones", "text", "options", "field"), [
    ("12", "hi", {}, "phones"),
    ("79031234567", "", {}, "text"),
    ("79031234567", "x" * 141, {}, "text"),
    ("79031234567", "hi", {"valid_hours": 99}, "valid_hours"),
    ("79031234567", "hi", {"schedule": "tomorrow"}, "schedule"),
])
def test_bad_input_is_refused_before_anything_is_queued(
        app: Celery, broker: str, redis_server: RedisServer, phones: str, text: str,
        options: dict[str, object], field: str) -> None:
    app.conf.mobilgroup_secret_url = "mobilgroup://l:p@1000?long_messages=error"
    with pytest.raises(ValidationError) as refused:
        mobilgroup_celery.enqueue(phones, text, app=app, **options)  # type: ignore[arg-type]
    assert refused.value.field == field
    assert _queued(redis_server, broker) == []


def test_importing_the_package_does_not_import_celery() -> None:
    import subprocess
    import sys

    code = "import sys, mobilgroup_backends; mobilgroup_backends.MobilgroupClient; " \
           "print('celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_retry_countdown_stays_well_inside_the_visibility_timeout(app: Celery) -> None:
    # tests.celery_app sets a 3 s visibility timeout: no countdown may come near it, however
    # many retries came before.
    delays = [mobilgroup_celery.retry_countdown(app, retries) for retries in range(12)]
    assert max(delays) <= 3 / 4
    default = Celery("plain", broker="memory://")
    assert mobilgroup_celery.retry_countdown(default, 0) <= mobilgroup_celery.RETRY_BACKOFF
    assert mobilgroup_celery.retry_countdown(default, 30) <= mobilgroup_celery.MAX_RETRY_DELAY


MESSAGES = 240


def _hold_answers(gateway: Emulator, unprocessed: int, processed: int) -> list[int | None]:
    """Hold the next exchanges: the first ``unprocessed`` never reach the gateway's books (a
    503 that is slow to come), the next ``processed`` are accepted and their answers held: the
    worst moment for a worker to die. Returns the ids of the accepted-but-unanswered sends."""
    start = len(gateway.requests)
    gateway.faults.clear()
    gateway.latency = 30
    gateway.faults.next("body", count=unprocessed, status=503, body=b"busy")

    def held() -> list[int | None]:
        return [ex.request_id for ex in gateway.requests.snapshot()[start:]
                if ex.command == "send" and ex.error == 0]

    _wait(lambda: gateway.faults.injected["body"] >= unprocessed and len(held()) >= processed,
          30, "the held exchanges")
    return held()


def _release(gateway: Emulator, seed: int) -> None:
    gateway.latency = 0
    gateway.faults.clear()
    gateway.faults.random(rate=0.15, seed=seed)


def _copies(gateway: Emulator) -> set[int | None]:
    """Ids of sends the gateway refused as copies of an accepted one (error 7)."""
    return {ex.request_id for ex in gateway.requests.snapshot()
            if ex.command == "send" and ex.error == 7}


def _pool_children(worker: Worker) -> list[int]:
    with open(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds pool children in /proc")
def test_killed_workers_lose_nothing_and_send_nothing_twice(
        app: Celery, broker: str, tmp_path: Path) -> None:
    """A few hundred sends through faults. First every pool child is SIGKILLed (the main process
    lives on), then the whole worker, each time while the gateway holds answers it has already
    accepted and requests it has not; then a new worker. Every id is accepted exactly once, none
    under a second id, none lost."""
    with Emulator(price_per_sms=Decimal(0)) as gateway:
        # No retries inside the client: every fault becomes a task retry or a redelivery.
        url = gateway.url(retries=0, timeout=5)
        app.conf.mobilgroup_secret_url = url
        gateway.faults.random(rate=0.15, seed=11)
        log = str(tmp_path / "workers.log")
        first = Worker(broker, url, log, concurrency=4, name="first")
        second: Worker | None = None
        try:
            sent = {mobilgroup_celery.enqueue(f"7903{n:07d}", f"order {n}", app=app): f"order {n}"
                    for n in range(MESSAGES)}
            _wait(lambda: len(gateway.outbox) >= MESSAGES // 4, 60, "the first quarter")
            held = _hold_answers(gateway, unprocessed=2, processed=2)
            children = _pool_children(first)
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            _release(gateway, seed=12)
            _wait(lambda: len(gateway.outbox) >= MESSAGES // 2, 60, "the first half")
            held += _hold_answers(gateway, unprocessed=2, processed=2)
            first.kill()
            _release(gateway, seed=13)
            second = Worker(broker, url, log, concurrency=4, name="second")
            _wait(lambda: {m.request_id for m in gateway.outbox} >= set(sent), 45,
                  "every message accepted")
            # The held sends were accepted before the kills, but their tasks never finished:
            # the broker gives them out again, and the gateway must tell those copies apart.
            _wait(lambda: set(held) <= _copies(gateway), 45, "the held sends to run again")
            second.stop()
        except BaseException:
            print((first if second is None else second).log_tail())
            raise
        finally:
            first.kill()
            if second is not None:
                second.kill()
        accepted = gateway.outbox.snapshot()

    assert len(children) == 4
    by_id = Counter(message.request_id for message in accepted)
    assert set(by_id) == set(sent), "an id was accepted that nobody enqueued"
    assert max(by_id.values()) == 1
    texts = Counter(message.text for message in accepted)
    assert len(accepted) == MESSAGES and max(texts.values()) == 1, "a message went out twice"
    assert all(sent[message.request_id] == message.text for message in accepted)


@pytest.fixture
def eager_app(mobilgroup_emulator: Emulator) -> Celery:
    """An app configured through Celery's own settings (``mobilgroup_secret_url``), run eagerly."""
    app = Celery("eager", broker="memory://")
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(retries=0)
    return app


def test_a_transport_failure_is_retried_under_the_same_id(
        eager_app: Celery, mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("close_after")  # accepted, answer lost
    mobilgroup_emulator.faults.next("http_500")
    task = eager_app.tasks[mobilgroup_celery.SEND_TASK]
    outcome = task.apply((123456789012345678, ["79031234567"], "retried"), {})
    assert outcome.successful(), outcome.traceback
    assert outcome.result["request_id"] == 123456789012345678
    assert outcome.result["accepted_earlier"] is True
    assert [m.request_id for m in mobilgroup_emulator.outbox] == [123456789012345678]
    # Three executions: accepted with the answer lost, a 500 (not processed), the copy (error 7).
    assert [(ex.fault, ex.error) for ex in mobilgroup_emulator.requests] == [
        ("close_after", 0), ("http_500", None), (None, 7)]
    assert {ex.request_id for ex in mobilgroup_emulator.requests} == {123456789012345678, None}


def test_a_long_text_is_one_task_sending_every_part_the_core_split(
        eager_app: Celery, mobilgroup_emulator: Emulator) -> None:
    eager_app.conf.task_always_eager = True  # the task runs here, as a worker would run it
    eager_app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(long_messages="split")
    first = mobilgroup_celery.enqueue("79031234567", "word " * 60, app=eager_app)
    texts = [m.text for m in mobilgroup_emulator.outbox]
    assert len(texts) == 3 and " ".join(texts).split() == ["word"] * 60
    assert mobilgroup_emulator.outbox[0].request_id == first
    assert len({m.request_id for m in mobilgroup_emulator.outbox}) == 3


def test_a_refusal_for_good_is_not_retried(
        eager_app: Celery, mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("body", count=20, status=404, body=b"not found")
    task = eager_app.tasks[mobilgroup_celery.SEND_TASK]
    outcome = task.apply((123456789012345679, ["79031234567"], "wrong endpoint"), {})
    assert outcome.failed()
    assert isinstance(outcome.result, TransportError) and outcome.result.status_code == 404
    assert len(mobilgroup_emulator.requests) == 1
    assert len(mobilgroup_emulator.outbox) == 0


def _worker_outcome(worker: Worker, request_id: int, timeout: float = 60) -> str:
    """The worker's log once the task of ``request_id`` has ended (failed or succeeded)."""
    def ended() -> bool:
        tail = worker.log_tail(200)
        return "succeeded in" in tail or "raised unexpected" in tail or "raised:" in tail

    _wait(ended, timeout, f"the task of request {request_id} to end")
    return worker.log_tail(200)


@pytest.mark.slow
def test_a_real_worker_fails_a_404_endpoint_after_one_request(
        app: Celery, broker: str, tmp_path: Path, mobilgroup_emulator: Emulator) -> None:
    gateway = mobilgroup_emulator
    gateway.faults.next("body", count=50, status=404, body=b"not found")
    app.conf.mobilgroup_secret_url = gateway.url(retries=3, backoff=0.01)
    worker = Worker(broker, app.conf.mobilgroup_secret_url, str(tmp_path / "w.log"), concurrency=1)
    try:
        request_id = mobilgroup_celery.enqueue("79031234567", "wrong endpoint", app=app)
        log = _worker_outcome(worker, request_id)
        time.sleep(1)  # a retry, had there been one, would come within the 0.75 s countdown cap
        log = worker.log_tail(200)
    finally:
        worker.kill()
    assert len(gateway.requests) == 1, log
    assert f"SMS request {request_id} not sent, not retried (refused)" in log
    assert "404" in log and "Retry in" not in log
    assert "raised unexpected: TransportError" in log  # the task ended failed


@pytest.mark.slow
def test_a_real_worker_fails_an_untrusted_certificate_at_once(
        app: Celery, broker: str, tmp_path: Path, tls_emulator: Emulator) -> None:
    app.conf.mobilgroup_secret_url = tls_emulator.url(retries=3, backoff=0.01)
    worker = Worker(broker, app.conf.mobilgroup_secret_url, str(tmp_path / "w.log"), concurrency=1)
    try:
        request_id = mobilgroup_celery.enqueue("79031234567", "untrusted", app=app)
        _worker_outcome(worker, request_id)
        time.sleep(1)
        log = worker.log_tail(200)
    finally:
        worker.kill()
    assert tls_emulator.requests.snapshot() == []  # no request got past the handshake
    assert log.count(f"SMS request {request_id} not sent, not retried (refused)") == 1, log
    assert "certificate" in log and "Retry in" not in log


@pytest.mark.slow
def test_a_real_worker_retries_an_account_refusal_until_money_is_added(
        app: Celery, broker: str, tmp_path: Path, mobilgroup_emulator: Emulator) -> None:
    gateway = mobilgroup_emulator
    gateway.account.balance = Decimal(0)
    app.conf.mobilgroup_secret_url = gateway.url(retries=0)
    worker = Worker(broker, app.conf.mobilgroup_secret_url, str(tmp_path / "w.log"), concurrency=1)
    try:
        request_id = mobilgroup_celery.enqueue("79031234567", "paid later", app=app)
        _wait(lambda: sum(1 for ex in gateway.requests.snapshot() if ex.error == 9) >= 2, 60,
              "the account refusal to be retried")
        gateway.account.balance = Decimal(100)  # money added
        _wait(lambda: len(gateway.outbox) == 1, 60, "the send once money is there")
        time.sleep(1)
        log = worker.log_tail(200)
    finally:
        worker.kill()
    assert [m.request_id for m in gateway.outbox] == [request_id]
    assert {ex.request_id for ex in gateway.requests} == {request_id}
    assert "Retry in" in log and "not retried" not in log


def test_the_worker_client_is_made_once_per_process_and_app(eager_app: Celery) -> None:
    client = mobilgroup_celery.worker_client(eager_app)
    assert mobilgroup_celery.worker_client(eager_app) is client
    other = Celery("other", broker="memory://")
    other.conf.mobilgroup_url = eager_app.conf.mobilgroup_secret_url
    assert mobilgroup_celery.worker_client(other) is not client
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must make its own: the parent's sockets are not its to use
        os.write(write, b"1" if mobilgroup_celery.worker_client(eager_app) is not client else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"


@pytest.mark.django_db
def test_track_due_polls_due_reports_through_the_django_app(
        eager_app: Celery, mobilgroup_emulator: Emulator) -> None:
    outcome = eager_app.tasks[mobilgroup_celery.TRACK_TASK].apply()
    assert outcome.successful(), outcome.traceback
    assert outcome.result["polled"] == 0


def test_track_due_without_django_names_the_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from celery import Celery; import mobilgroup_backends.celery as c\n"
            "app = Celery('x', broker='memory://')\n"
            "app.conf.mobilgroup_secret_url = 'mobilgroup://l:p@1/79031234567'\n"
            "try:\n    app.tasks[c.TRACK_TASK]()\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                            if k != "DJANGO_SETTINGS_MODULE"})
    assert out.stdout.startswith("ConfigurationError")
    assert "INSTALLED_APPS" in out.stdout
