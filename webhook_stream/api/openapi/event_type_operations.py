"""The event-type catalog's and the filter check's entries in the OpenAPI document."""

from __future__ import annotations

from webhook_stream.api.openapi.operations import Operation
from webhook_stream.api.openapi.schemas import PAGE_PARAMETERS

__all__ = ["EVENT_TYPE_OPERATIONS"]

EVENT_TYPE_OPERATIONS: list[Operation] = [
    Operation(
        "/event-types",
        "GET",
        "List the event-type catalog",
        "any",
        {200: ("One page, by name", "EventTypeList")},
        parameters=[*PAGE_PARAMETERS],
        tag="event-types",
        description="Every token reads the whole catalog: types, schemas and examples are "
        "what tenants subscribe to, not tenant data.",
    ),
    Operation(
        "/event-types/{name}",
        "GET",
        "Read an event type",
        "any",
        {200: ("The entry", "EventType")},
        tag="event-types",
    ),
    Operation(
        "/event-types/{name}",
        "PUT",
        "Create or replace an event type",
        "admin",
        {
            200: ("Replaced", "EventType"),
            201: ("Created", "EventType"),
            202: ("Written, not yet applied here", "EventType"),
        },
        body="EventTypeWrite",
        tag="event-types",
        description="The schema (JSON Schema 2020-12, of the event's `data`) is checked "
        "itself, may refer only within itself (`$ref: '#...'`), and every example must pass "
        "it: otherwise 400 naming the path (`schema.properties.amount.type`, `examples[1]`).",
    ),
    Operation(
        "/event-types/{name}",
        "DELETE",
        "Delete an event type",
        "admin",
        {200: ("Deleted", "EventTypeDeleted"), 202: ("Written", "EventTypeDeleted")},
        tag="event-types",
    ),
    Operation(
        "/filter-check",
        "POST",
        "Would this filter match this event?",
        "any",
        {200: ("The answer", "FilterCheckResult")},
        body="FilterCheck",
        description="Evaluates a subscription `filter` against a pasted event as fan-out "
        "does; an invalid filter answers 400 naming its path. No event is sent.",
    ),
]
