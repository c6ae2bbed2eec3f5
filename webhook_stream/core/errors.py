"""The exceptions of webhook-stream, under one root.

Each says whether retrying can help (``retriable``), in the manner of aiokafka's errors::

    WebhookStreamError
    ├── ConfigError                 bad WEBHOOK_STREAM_* value; fix the environment
    │   └── KafkaSecurityError      Kafka refused our TLS certificate check or SASL login
    ├── InvalidSubscription         a subscription failed validation; ``field`` names the culprit
    ├── RejectedEvent               an input record cannot be parsed or is refused; goes to
    │                               webhooks.rejected with ``reason``
    ├── RecordTooLarge              a record the worker would write exceeds MAX_RECORD_BYTES;
    │                               its input goes to webhooks.rejected (too_large)
    ├── BrokerError                 the embedded broker could not be started, or Kafka could
    │                               not be reached (retriable); a worker that cannot reach
    │                               it for BROKER_UNAVAILABLE_TIMEOUT exits non-zero
    ├── StatusUnavailable           the status view process is (re)starting or did not
    │                               answer; the status routes answer 503 (retriable)
    ├── FanoutUnavailable           the fan-out process is (re)starting or did not answer;
    │                               /health says not joined meanwhile (retriable)
    ├── ApiError                    (api.errors) a refused API request: ``status``, ``code``,
    │                               ``field``; retriable only when ``code`` is unavailable
    ├── FlowStateUnavailable        webhooks.endpoint_flow could not be read on assignment;
    │                               the worker stops rather than break strict order (retriable)
    ├── OwnershipLost               the group membership lapsed (a stall) before an action
    │                               on an owned partition: not done; its next owner does it
    └── WriteRefused                a subscription write was refused by its owner (exists,
                                    missing, stale version: not retriable; table behind
                                    or Kafka unavailable: 503, retriable)

A failed HTTP attempt is not an exception: it is a result, its transport errors are
:class:`webhook_stream.http.errors.TransportError` (``retriable``, ``blames_receiver``) and
:func:`webhook_stream.delivery.policy.decide` says what follows.
"""

from __future__ import annotations


class WebhookStreamError(Exception):
    """Root of every error raised by webhook-stream."""

    retriable: bool = False


class ConfigError(WebhookStreamError):
    """A setting has an invalid value."""


class KafkaSecurityError(ConfigError):
    """Kafka's certificate failed verification, TLS failed, or SASL authentication failed.

    Not retriable: the settings (CA, certificate, mechanism, credentials) must change.
    """


class BrokerError(WebhookStreamError):
    """The embedded broker could not be started, or Kafka could not be reached."""

    retriable = True


class RecordTooLarge(WebhookStreamError):
    """A record would exceed the producer's ``max_request_size`` (``MAX_RECORD_BYTES``)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} of {size} bytes is over the {limit}-byte record limit")
        self.size = size
        self.limit = limit


class WriteRefused(WebhookStreamError):
    """The owner of an endpoint id refused a write; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.retriable = status >= 500


class StatusUnavailable(WebhookStreamError):
    """The status view process is starting, restarting or did not answer in time."""

    retriable = True


class FanoutUnavailable(WebhookStreamError):
    """The fan-out process is starting, restarting or did not answer in time."""

    retriable = True


class OwnershipLost(WebhookStreamError):
    """The lease on a partition expired before an action on it (core.lease): not taken."""


class FlowStateUnavailable(WebhookStreamError):
    """The strict-head and parking state could not be read when partitions were assigned."""

    retriable = True


class InvalidSubscription(WebhookStreamError):
    """A subscription is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RejectedEvent(WebhookStreamError):
    """An input record could not be parsed or was refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
