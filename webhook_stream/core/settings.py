"""The one settings object, read once from ``WEBHOOK_STREAM_*`` environment variables.

Only this module touches ``os.environ`` for configuration; everything else receives a
:class:`Settings`. Every field is documented in the README with its default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from webhook_stream.core.env_values import (
    ProxyURL,
    Secret,
    convert,
    format_duration,
    parse_duration,
    parse_networks,
    parse_proxy_url,
    parse_schedule,
)
from webhook_stream.core.errors import ConfigError
from webhook_stream.core.sealing import SecretBox

# Re-exported: callers read values the way settings do.
__all__ = [
    "PREFIX",
    "ConfigError",
    "ProxyURL",
    "Secret",
    "Settings",
    "format_duration",
    "parse_duration",
    "parse_networks",
    "parse_proxy_url",
    "parse_schedule",
]

PREFIX = "WEBHOOK_STREAM_"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build with :meth:`from_env`; never mutate."""

    #: Kafka bootstrap URL(s), ``kafka://host:port[;host:port]`` (``kafka+ssl://`` = SSL).
    broker: str = "kafka://localhost:9092"
    #: Kafka connection security, for every client (see :mod:`webhook_stream.core.kafka_auth`):
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; empty = from the URL.
    kafka_security_protocol: str = ""
    #: CA bundle to trust (PEM; empty = the system's); client certificate and key for mTLS.
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    #: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` or ``OAUTHBEARER``.
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    #: OAUTHBEARER token provider, ``module:callable`` returning an aiokafka
    #: ``AbstractTokenProvider`` (called once, with no arguments).
    kafka_sasl_oauth_token_provider: str = ""
    #: Faust application id; also the prefix of consumer group ids.
    app_id: str = "webhook-stream"
    #: HTTP API port (the worker's ``--web-port`` flag wins) and bind address: the API
    #: listens on exactly this address (the worker's ``--web-host`` flag wins).
    web_port: int = 6066
    web_host: str = "0.0.0.0"
    #: Seconds an API connection may stay without a whole request: idle between requests
    #: (keep-alive), or still sending a request's head; then it is closed. A request's body
    #: must arrive within as long again (else 408).
    web_client_timeout: float = 20.0
    #: Bearer token for the management API; empty = management API refuses.
    api_token: Secret = field(default_factory=lambda: Secret(""))
    #: Default retry schedule: one ``webhooks.retry.<delay>`` topic per step.
    retry_schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200)
    #: Random extra delay added to each retry, as a fraction of the step (0.1 = up to +10 %).
    retry_jitter: float = 0.1
    #: Upper bound on a receiver's ``Retry-After``.
    retry_after_max: float = 3600.0
    #: Allow ``http://`` and private/loopback targets (development and tests only).
    allow_insecure_targets: bool = False
    #: Networks allowed as targets although private (``10.1.0.0/16,192.168.5.7``).
    allow_target_networks: tuple[str, ...] = ()
    #: Fernet key(s), comma-separated, newest first: signing secrets are stored
    #: encrypted in ``webhooks.subscriptions``. Empty = stored in clear text.
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    #: Partitions of the topics the app creates.
    partitions: int = 8
    #: Replication factor of the topics the app creates.
    replication_factor: int = 1
    #: Topic regex the events consumer subscribes to.
    events_pattern: str = r"^events\..+"
    #: Fetch waits (Tansu never answers early: latency per hop): while records come; once
    #: fetches came back empty for a while (reset by records); that off the delivery path.
    fetch_max_wait: float = 0.02
    fetch_idle_wait: float = 0.2
    background_idle_wait: float = 1.0
    #: How often new ``events.*`` topics are discovered (consumer metadata refresh).
    topic_discovery_interval: float = 5.0
    #: How often ``webhook_consumer_lag`` and ``webhook_consumer_lag_seconds`` are sampled
    #: (two broker requests per group, one-record fetches for lagging partitions).
    lag_interval: float = 10.0
    #: Default HTTP timeout per attempt (an endpoint's ``timeout_s`` wins).
    http_timeout: float = 10.0
    #: Connection pool: total connections and connections per host.
    http_pool_size: int = 1000
    http_pool_per_host: int = 16
    #: Forward proxy every delivery goes through (``http://[user:password@]host:port``);
    #: empty = deliveries connect directly. The password is never logged.
    egress_proxy: ProxyURL = field(default_factory=lambda: ProxyURL(""))
    #: Target hosts that bypass the proxy (``hooks.internal,.corp.example``: a leading dot,
    #: or none, also matches subdomains).
    egress_no_proxy: tuple[str, ...] = ()
    #: Bytes of a receiver's response body kept in the attempt log.
    response_body_max: int = 1024
    #: Largest accepted event (bytes); larger ones go to ``webhooks.rejected``.
    max_event_bytes: int = 1_048_576
    #: Largest record the worker writes (the producer's ``max_request_size``); keep it at
    #: or below the broker's ``message.max.bytes``. Events whose records would not fit
    #: go to ``webhooks.rejected`` with reason ``too_large``.
    max_record_bytes: int = 1_048_576
    #: Deliveries held in memory by one worker before it stops fetching (back-pressure).
    max_pending_deliveries: int = 5000
    #: Of those, one endpoint's share (a quarter at most); the rest parks until it has room.
    max_pending_per_endpoint: int = 500
    #: Parked deliveries read back and held in memory; of them, one tenant's (a quarter at most).
    max_parked_held: int = 1000
    max_parked_held_per_tenant: int = 100
    #: Of ``max_pending_deliveries``, one tenant's endpoints' (half at most); the rest parks.
    max_pending_per_tenant: int = 1000
    #: HTTP attempts of one tenant's endpoints in flight at once on this worker.
    max_in_flight_per_tenant: int = 100
    #: Endpoints one tenant may have (API creates beyond it answer 409 ``limit_exceeded``).
    max_endpoints_per_tenant: int = 1000
    #: Events checked against their catalogued type's JSON Schema (``webhooks.event_types``):
    #: ``off``, ``per_type`` (entries with ``"enforce": true``) or ``all`` catalogued types.
    validate_events: str = "per_type"
    #: API writes (POST/PUT/PATCH/DELETE) one tenant token may make per second on one
    #: worker, after a burst of ``tenant_write_burst``; beyond it 429 ``rate_limited``.
    tenant_writes_per_s: float = 10.0
    tenant_write_burst: int = 50
    #: Retry records buffered per retry-topic partition before that partition is paused.
    retry_buffer_per_partition: int = 1000
    #: Of those, the most one tenant holds (and at most half): its further not yet due
    #: retries are written again to a retry topic (due time kept) instead of held.
    retry_buffer_per_tenant: int = 250
    #: Kafka consumer group timings; short by default so a dead worker's partitions move fast.
    #: Heartbeats every 3 s (Kafka's default; each one costs the idle worker and its broker).
    #: A join confirms the lease only as of when it began and can take 5 s on Tansu, so
    #: the lease heartbeats once at the end of each join (core/lease.py): without that the
    #: first heartbeat came as the lease ran out, and a rebalance then dropped what a
    #: healthy worker held instead of draining it (tests/delivery/test_stall.py).
    session_timeout: float = 10.0
    rebalance_timeout: float = 10.0
    heartbeat_interval: float = 3.0
    commit_interval: float = 1.0
    #: ...and the delivery loop commits as soon as this many more deliveries are finished
    #: (0 = by time only): a kill -9 repeats about this many per worker.
    commit_every: int = 100
    #: A worker that cannot reach the broker this long exits with status 1 (0 = never).
    broker_unavailable_timeout: float = 60.0
    #: How long SIGTERM waits for in-flight HTTP calls before the worker exits.
    shutdown_timeout: float = 30.0
    #: Disable an endpoint whose every attempt failed for this long (0 = never)...
    health_disable_after: float = 3 * 86400.0
    #: ...or after this many consecutive dead letters (0 = never); 410 Gone disables at once.
    health_disable_after_dead_letters: int = 20
    #: A message whose attempts failed this many times in a row is announced as
    #: ``webhook.message.attempt.failing`` on webhooks.operational (0 = never).
    operational_failing_after: int = 4
    #: Grace period during which a rotated-out secret still signs.
    secret_rotation_grace: float = 86400.0
    #: How long delivery status and attempts stay queryable (each worker's status store).
    status_retention: float = 7 * 86400.0
    #: Directory of the worker's status store (one SQLite file per worker and web port).
    status_dir: str = "webhook-stream-status"
    #: URL other workers use to forward status queries to this one; empty =
    #: ``http://<web host, or this host's name when binding all>:<web port>``.
    status_advertised_url: str = ""
    #: Schema Registry of events in the Confluent wire format (empty = off); credentials in
    #: the next two, never the URL; the CA bundle (PEM) trusted for ``https://``.
    schema_registry_url: str = ""
    schema_registry_username: str = ""
    schema_registry_password: Secret = field(default_factory=lambda: Secret(""))
    schema_registry_ca_file: str = ""
    #: JSON file of per-topic JMESPath mappings for events in their own shape; empty = none.
    event_mappings: str = ""
    #: Codec of the worker's producer (``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``):
    #: zstd, a delivery record in 7 % of the bytes, less CPU in all (bench row 6h).
    compression: str = "zstd"
    #: Allocations between the garbage collector's young-generation passes (Python's
    #: default is 700). A delivery allocates a few hundred objects, nearly all freed by
    #: reference counting; at 700 the collector ran every few deliveries for nothing.
    gc_threshold: int = 50_000
    #: Fan out in a process of the worker's own (on another core) instead of beside the
    #: delivery loop: case A's delivery loop had been 0.85-0.9 busy on one core, a fifth
    #: of it fanning out. Off: one process (a machine with one core).
    fanout_process: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``WEBHOOK_STREAM_*`` variable; a bad value raises :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # each converted to its field's type by env_values.convert
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name not in env:
                continue
            raw = env[name]
            try:
                values[f.name] = convert(f.name, raw, f.default)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        if not isinstance(self.egress_proxy, ProxyURL):  # built in code: still never logged
            object.__setattr__(self, "egress_proxy", ProxyURL(self.egress_proxy))
        if not isinstance(self.schema_registry_password, Secret):
            object.__setattr__(
                self, "schema_registry_password", Secret(self.schema_registry_password)
            )

    def validate(self) -> None:
        try:
            parse_proxy_url(self.egress_proxy)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}EGRESS_PROXY: {exc}") from None
        if not self.retry_schedule:
            raise ConfigError(f"{PREFIX}RETRY_SCHEDULE: needs at least one delay")
        if self.partitions < 1:
            raise ConfigError(f"{PREFIX}PARTITIONS: must be >= 1")
        if self.max_record_bytes < 65_536:
            raise ConfigError(f"{PREFIX}MAX_RECORD_BYTES: must be >= 65536")
        if not 0 < self.max_event_bytes <= self.max_record_bytes:
            raise ConfigError(
                f"{PREFIX}MAX_EVENT_BYTES ({self.max_event_bytes}) must be between 1 and "
                f"{PREFIX}MAX_RECORD_BYTES ({self.max_record_bytes}), the largest record the "
                "producer may write: larger events could never be delivered. Lower "
                f"MAX_EVENT_BYTES, or raise MAX_RECORD_BYTES together with the broker's "
                "message.max.bytes"
            )
        for name in (
            "max_pending_deliveries",
            "max_pending_per_endpoint",
            "max_parked_held",
            "max_parked_held_per_tenant",
            "max_pending_per_tenant",
            "max_in_flight_per_tenant",
            "max_endpoints_per_tenant",
            "tenant_write_burst",
            "retry_buffer_per_partition",
            "retry_buffer_per_tenant",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()}: must be >= 1")
        if self.gc_threshold < 700:
            raise ConfigError(f"{PREFIX}GC_THRESHOLD: must be >= 700 (Python's default)")
        if self.http_timeout <= 0:
            raise ConfigError(f"{PREFIX}HTTP_TIMEOUT: must be > 0")
        if self.validate_events not in ("off", "per_type", "all"):
            raise ConfigError(f"{PREFIX}VALIDATE_EVENTS: one of off, per_type, all")
        if not self.tenant_writes_per_s > 0:
            raise ConfigError(f"{PREFIX}TENANT_WRITES_PER_S: must be > 0")
        try:
            re.compile(self.events_pattern)
        except re.error as exc:
            raise ConfigError(f"{PREFIX}EVENTS_PATTERN: {exc}") from None
        try:
            parse_networks(self.allow_target_networks)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}ALLOW_TARGET_NETWORKS: {exc}") from None
        SecretBox.from_setting(self.secret_key)
        self._validate_kafka_security()
        self._validate_ingest()

    def _validate_ingest(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"{PREFIX}COMPRESSION: {self.compression!r} is not one of {COMPRESSIONS}"
            )
        parts = urlsplit(self.schema_registry_url)
        if self.schema_registry_url and (
            parts.scheme not in ("http", "https") or "@" in parts.netloc or not parts.hostname
        ):
            raise ConfigError(
                f"{PREFIX}SCHEMA_REGISTRY_URL: http(s)://host[:port][/path], credentials not in "
                "the URL but in ..._USERNAME and ..._PASSWORD"
            )
        if bool(self.schema_registry_username) != bool(self.schema_registry_password):
            raise ConfigError(f"{PREFIX}SCHEMA_REGISTRY_USERNAME and ..._PASSWORD: set both")
        for name in ("schema_registry_ca_file", "event_mappings"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{PREFIX}{name.upper()}: no such file: {path}")

    def _validate_kafka_security(self) -> None:
        protocol = self.security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of "
                + ", ".join(SECURITY_PROTOCOLS)
            )
        mechanism = self.kafka_sasl_mechanism
        sasl = protocol.startswith("SASL_")
        if mechanism and mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"{PREFIX}KAFKA_SASL_MECHANISM: {mechanism!r} is not one of "
                + ", ".join(SASL_MECHANISMS)
            )
        if sasl and not mechanism:
            raise ConfigError(f"{PREFIX}KAFKA_SASL_MECHANISM: required with {protocol}")
        if mechanism and not sasl:
            raise ConfigError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL: SASL_PLAINTEXT or SASL_SSL needed with "
                f"KAFKA_SASL_MECHANISM={mechanism} (it is {protocol})"
            )
        if mechanism == "OAUTHBEARER":
            if ":" not in self.kafka_sasl_oauth_token_provider:
                raise ConfigError(
                    f"{PREFIX}KAFKA_SASL_OAUTH_TOKEN_PROVIDER: required with OAUTHBEARER, "
                    "as module:callable"
                )
        elif mechanism and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ConfigError(
                f"{PREFIX}KAFKA_SASL_USERNAME and ..._PASSWORD: both required with {mechanism}"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError(
                f"{PREFIX}KAFKA_SSL_CERTFILE and ..._KEYFILE: set both (mTLS) or neither"
            )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{PREFIX}{name.upper()}: no such file: {path}")

    @property
    def security_protocol(self) -> str:
        """The protocol in effect: the setting, else ``SSL`` for ``kafka+ssl://`` URLs."""
        if self.kafka_security_protocol:
            return self.kafka_security_protocol.strip().upper()
        return "SSL" if self.broker.strip().lower().startswith("kafka+ssl://") else "PLAINTEXT"

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka://a:9092;b:9092`` as aiokafka wants it."""
        hosts = self.broker.split("://", 1)[-1]
        return [h.strip() for h in re.split(r"[;,]", hosts) if h.strip()]


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
