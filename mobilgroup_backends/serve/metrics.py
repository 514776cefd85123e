"""The receiver's Prometheus metrics (``GET /metrics``), in a registry of its own, so that two
receivers in one process (tests, an application mounting the app twice) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ReceiverMetrics"]


class ReceiverMetrics:
    """Counters and the gateway latency of one receiver."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter(
            "mobilgroup_receiver_notifications", "Notifications received, by route and outcome "
            "(sent, held, duplicate, failed, invalid)", ["route", "outcome"],
            registry=self.registry)
        self.sms = Counter(
            "mobilgroup_receiver_sms_sent", "SMS parts the gateway accepted (accepted_earlier: "
            "a retry the gateway had already sent)", ["route", "accepted_earlier"],
            registry=self.registry)
        self.refused = Counter(
            "mobilgroup_receiver_requests_refused", "Requests refused before anything was sent, "
            "by reason (unauthorized, too_large, bad_json, bad_payload, no_recipient, not_found, "
            "method)",
            ["reason"], registry=self.registry)
        self.held = Counter(
            "mobilgroup_receiver_held_back", "Notifications the alert budget held back (told in "
            "the next summary SMS)", ["route"], registry=self.registry)
        self.summaries = Counter(
            "mobilgroup_receiver_summaries", "Summary SMS sent for notifications held back",
            registry=self.registry)
        self.latency = Histogram(
            "mobilgroup_receiver_gateway_seconds", "Seconds per gateway send, retries included",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
