"""The receiver as ops teams run it: a real Prometheus Alertmanager notifies ``mobilgroup serve``
(its own process), which texts through the emulator; killed after the gateway accepted and
before it answered, it is started again and Alertmanager's retry sends nothing twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobilgroup_backends.emulator import Emulator
from tests.helpers import sent_ids, texts, wait_until
from tests.receiver import (
    ALERTMANAGER,
    TOKEN,
    Alertmanager,
    ReceiverProcess,
    alertmanager_payload,
    post,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_mobilgroup_environment")]

PHONE = "79000000001"


@pytest.fixture
def receiver(mobilgroup_emulator: Emulator, tmp_path: Path) -> Iterator[ReceiverProcess]:
    # A patient receiver: the gateway's held answer (below) must outlast the kill, never the
    # receiver's own timeout, however slow a busy machine is to get there.
    process = ReceiverProcess(tmp_path, {"MOBILGROUP_URL": mobilgroup_emulator.url(PHONE),
                                         "MOBILGROUP_RECEIVER_TOKEN": TOKEN,
                                         "MOBILGROUP_TIMEOUT": "60"})
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def alertmanager(receiver: ReceiverProcess, tmp_path: Path) -> Iterator[Alertmanager]:
    if ALERTMANAGER is None:
        message = ("prometheus-alertmanager is not installed: apt-get install "
                   "prometheus-alertmanager (Debian, Ubuntu), or put Alertmanager's binary on PATH")
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Alertmanager tests. {message}", pytrace=False)
        pytest.skip(message)
    manager = Alertmanager(tmp_path, f"{receiver.base}/alertmanager")
    try:
        yield manager.start()
    finally:
        manager.stop()


def test_alerts_posted_to_alertmanager_arrive_as_sms_firing_then_resolved(
        alertmanager: Alertmanager, receiver: ReceiverProcess,
        mobilgroup_emulator: Emulator) -> None:
    alertmanager.fire("DiskFull", instance="db1:9100")
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 1, 30), alertmanager.log()
    alertmanager.fire("DiskFull", resolved=True, instance="db1:9100")
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 2, 30), alertmanager.log()
    assert texts(mobilgroup_emulator) == [
        "[FIRING] DiskFull (severity=critical, instance=db1:9100): DiskFull on the test system",
        "[RESOLVED] DiskFull (severity=critical, instance=db1:9100): DiskFull on the test system"]
    assert all(message.phones == (PHONE,) for message in mobilgroup_emulator.outbox)
    assert "alertmanager notification (firing, 1 alert(s)) to 7900*****01: sent" \
        in receiver.output()
    assert TOKEN not in receiver.output() and "demo-password" not in receiver.output()


def test_a_receiver_killed_after_the_gateway_accepted_sends_nothing_twice(
        alertmanager: Alertmanager, receiver: ReceiverProcess,
        mobilgroup_emulator: Emulator) -> None:
    # The gateway registers the SMS, then holds its answer: the receiver is killed meanwhile,
    # so Alertmanager never hears back and retries once the receiver is up again.
    mobilgroup_emulator.faults.next("delay", seconds=30.0)
    alertmanager.fire("NodeDown", instance="web1:9100")
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 1, 30), alertmanager.log()
    receiver.kill()
    receiver.start()
    # The retry reaches the gateway with the same id, answered "already sent" (error 7).
    assert wait_until(lambda: any(exchange.error == 7 for exchange in mobilgroup_emulator.requests),
                      40), alertmanager.log() + receiver.output()
    assert wait_until(lambda: "(accepted earlier)" in receiver.output(), 10), receiver.output()
    assert len(mobilgroup_emulator.outbox) == 1
    alertmanager.fire("NodeDown", resolved=True, instance="web1:9100")
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 2, 30), alertmanager.log()
    assert max(sent_ids(mobilgroup_emulator).values()) == 1
    assert texts(mobilgroup_emulator)[1].startswith("[RESOLVED] NodeDown")


def test_a_gateway_that_is_down_makes_alertmanager_retry_until_it_is_sent(
        alertmanager: Alertmanager, mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("close_before", count=2)  # the receiver retries once: 503
    alertmanager.fire("QueueStuck")
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 1, 40), alertmanager.log()
    assert mobilgroup_emulator.faults.describe()["injected"]["close_before"] == 2
    assert "unexpected status code 503" in alertmanager.log()
    assert len(mobilgroup_emulator.outbox) == 1


def test_a_wrong_token_gets_401_nothing_sent_and_the_fixed_config_sends_it(
        alertmanager: Alertmanager, mobilgroup_emulator: Emulator) -> None:
    alertmanager.reload("wrong-token-wrong-token")
    alertmanager.fire("BackupLate")
    assert wait_until(lambda: "unexpected status code 401" in alertmanager.log(), 30)
    assert len(mobilgroup_emulator.outbox) == 0
    # Alertmanager does not retry a 4xx at once, but flushes the group again every
    # group_interval while it fails: with the token fixed, the next flush gets it through.
    alertmanager.reload(TOKEN)
    assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 1, 30), alertmanager.log()
    assert texts(mobilgroup_emulator) == [
        "[FIRING] BackupLate (severity=critical): BackupLate on the test system"]


def test_the_command_stops_on_sigterm_and_sends_the_pending_summary_first(
        mobilgroup_emulator: Emulator, tmp_path: Path) -> None:
    process = ReceiverProcess(tmp_path, {"MOBILGROUP_URL": mobilgroup_emulator.url(PHONE),
                                         "MOBILGROUP_RECEIVER_TOKEN": TOKEN,
                                         "MOBILGROUP_ALERT_MAX_SMS": "1"}).start()
    try:
        outcomes = [post(process.base, "/alertmanager", alertmanager_payload(name=f"A{n}"))
                    .json()["outcome"] for n in range(3)]
    finally:
        process.stop()
    assert outcomes == ["sent", "held", "held"]
    assert process.process is not None and process.process.returncode == 0
    assert len(mobilgroup_emulator.outbox) == 2
    assert texts(mobilgroup_emulator)[1].startswith("+2 more CRITICAL since")
    assert "stopping" in process.output()
