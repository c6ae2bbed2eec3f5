"""MkDocs hooks: the pages that are generated from the code, so that they cannot drift.

* ``<!-- settings-reference -->`` becomes the table of every ``Settings`` field: its
  variable and default from ``core/settings.py``, its meaning from
  ``reference/settings.yml`` (a field without one fails the build).
* ``<!-- openapi-reference -->`` becomes every operation of the OpenAPI document the
  worker serves at ``/openapi.json`` (``build_document``), which is also written to the
  site as ``openapi.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File, Files

from webhook_stream.api.openapi.document import build_document
from webhook_stream.core.settings import PREFIX, Settings

SETTINGS_MARK = "<!-- settings-reference -->"
OPENAPI_MARK = "<!-- openapi-reference -->"


# --------------------------------------------------------------------------- settings

DESCRIPTIONS = Path(__file__).parent / "reference" / "settings.yml"


class UndocumentedSetting(Exception):
    """A Settings field without a description, or a description of no field."""


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"


def default_text(field: dataclasses.Field[Any]) -> str:
    """The default as one would write it in the environment (``5s``, ``1h``, ``0``)."""
    if field.default_factory is not dataclasses.MISSING:
        value: Any = field.default_factory()
    else:
        value = field.default
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float) and field.name != "retry_jitter":
        return f"`{_duration(value)}`"
    if isinstance(value, tuple):
        if not value:
            return "unset"
        shown = (_duration(v) if isinstance(v, float | int) else str(v) for v in value)
        return "`" + ",".join(shown) + "`"
    if str(value) == "":
        return "unset"
    return f"`{value}`"


def settings_table(descriptions: Path = DESCRIPTIONS) -> str:
    """Every field of :class:`Settings`, in its order; raises on a missing description."""
    described = yaml.safe_load(descriptions.read_text())
    names = [f.name for f in dataclasses.fields(Settings)]
    missing = [n for n in names if n not in described]
    stale = [n for n in described if n not in names]
    if missing or stale:
        raise UndocumentedSetting(
            f"{descriptions.name}: describe {missing}; no such setting {stale}"
        )
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        entry = described[f.name]
        default = default_text(f)
        if entry.get("default_note"):
            default += f" ({entry['default_note']})"
        rows.append(f"| `{PREFIX}{f.name.upper()}` | {default} | {entry['meaning']} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- OpenAPI


def _schema_name(ref: dict[str, Any] | None) -> str | None:
    if not ref:
        return None
    target = ref.get("$ref", "")
    return target.rsplit("/", 1)[-1] if target else None


def _constraints(schema: dict[str, Any]) -> str:
    shown = []
    for key, text in (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("minLength", "length >= {}"),
        ("maxLength", "length <= {}"),
        ("minItems", ">= {} items"),
        ("maxItems", "<= {} items"),
    ):
        if key in schema:
            shown.append(text.format(schema[key]))
    return f" ({', '.join(shown)})" if shown else ""


def _description(schema: dict[str, Any]) -> str:
    if schema.get("description"):
        return str(schema["description"])
    for part in schema.get("anyOf", []) + schema.get("oneOf", []):
        if part.get("description"):
            return str(part["description"])
    return ""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return _schema_name(schema) or "object"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [p for p in schema[key] if p.get("type") != "null"]
            nullable = len(parts) < len(schema[key])
            text = " or ".join(_type(p) for p in parts)
            return text + (" or null" if nullable else "")
    kind = schema.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("format"):
        kind = f"{kind} ({schema['format']})"
    return (kind or "any") + _constraints(schema)


def _cell(text: object) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def openapi_markdown(doc: dict[str, Any]) -> str:
    schemas = doc["components"]["schemas"]
    out: list[str] = []
    used: list[str] = []
    for tag in doc["tags"]:
        out.append(f"## {tag['name'].capitalize()}\n\n{tag['description']}.\n")
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                if op["tags"][0] != tag["name"]:
                    continue
                out.append(f"### `{method.upper()} {path}`\n\n{op['summary']}\n")
                if op.get("description"):
                    out.append(op["description"] + "\n")
                params = op.get("parameters", [])
                if params:
                    out.append("| parameter | in | type | |\n| --- | --- | --- | --- |")
                    for p in params:
                        out.append(
                            f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} "
                            f"| {_cell(p.get('description'))} |"
                        )
                    out.append("")
                body = op.get("requestBody")
                if body:
                    name = _schema_name(body["content"]["application/json"]["schema"])
                    used.append(name or "")
                    out.append(f"Body: [`{name}`](#{(name or '').lower()})\n")
                answers = []
                for status, resp in op["responses"].items():
                    if "$ref" in resp:
                        continue
                    content = resp.get("content", {}).get("application/json", {})
                    name = _schema_name(content.get("schema"))
                    if name:
                        used.append(name)
                    shown = f" ([`{name}`](#{name.lower()}))" if name else ""
                    answers.append(f"`{status}` {_cell(resp['description'])}{shown}")
                out.append("Answers: " + "; ".join(answers) + "\n")
    out.append("## Schemas\n")
    for name in sorted(set(used) | {"Error"}):
        schema = schemas.get(name)
        if not schema:
            continue
        out.append(f"### {name}\n")
        if schema.get("description"):
            out.append(_cell(schema["description"]) + "\n")
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            out.append("| field | type | required | |\n| --- | --- | --- | --- |")
            for field, spec in props.items():
                out.append(
                    f"| `{field}` | {_type(spec)} | {'yes' if field in required else ''} "
                    f"| {_cell(_description(spec))} |"
                )
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- hooks


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if SETTINGS_MARK in markdown:
        markdown = markdown.replace(SETTINGS_MARK, settings_table())
    if OPENAPI_MARK in markdown:
        markdown = markdown.replace(OPENAPI_MARK, openapi_markdown(build_document()))
    return markdown


def on_files(files: Files, config: Any) -> Files:
    files.append(
        File.generated(config, "openapi.json", content=json.dumps(build_document(), indent=2))
    )
    return files
