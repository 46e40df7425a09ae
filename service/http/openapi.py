"""The OpenAPI document, completed where FastAPI's generator cannot see.

FastAPI documents what route functions declare. Part of the contract lives in layers it does
not read: every error is problem+json (problems.py), the API key (auth.py), admission
control's 503 + Retry-After and 408 (admission.py), the 422 for a query parameter an
operation does not take (the guard's, access.py). This module adds them (routes that need
the model declare its 503 themselves: NOT_READY in service/deps.py), so each operation lists
every status it can answer, with body schema and headers. Which operations are keyed or
admission-controlled is read from the dependencies the routes declare (their router's guard,
`ADMITTED`), the ones their requests run.
tests/service/test_schemathesis.py holds the server to that with every Schemathesis check (`st run
--checks all`), tests/service/test_openapi.py by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from stylebox.service.http.access import Access, access_of, dependency_calls
from stylebox.service.http.admission import admitted
from stylebox.service.http.problems import MEDIA_TYPE
from stylebox.service.settings import Settings
from stylebox.service.state import state_of
from stylebox.service.styles import MAX_SPEC_CHARS, STYLE_SPEC_PATTERN

_REF = "#/components/schemas/Problem"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; extension members depend on `type`.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:stylebox:problem:<slug> or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "valid_styles": {"type": "array", "items": {"type": "string"}},
        "unknown_styles": {"type": "array", "items": {"type": "string"}},
        "unknown_parameters": {"type": "array", "items": {"type": "string"}},
        "unknown_model": {"type": "string"},
        "valid_models": {"type": "array", "items": {"type": "string"},
                         "description": "the models this server serves (?model=)"},
        "valid_parameters": {"type": "array", "items": {"type": "string"},
                             "description": "the query parameters the operation takes"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "request validation errors: loc, msg, type"},
    },
    "additionalProperties": True,
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "required": True, "schema": {"type": "integer", "minimum": 0}}}
_CHALLENGE = {"WWW-Authenticate": {"description": 'Bearer realm="stylebox"', "required": True,
                                   "schema": {"type": "string"}}}


def _add(responses: dict[str, Any], status: int, description: str,
         headers: dict[str, Any] | None = None) -> None:
    entry = responses.setdefault(str(status), {"description": description})
    if headers:
        entry.setdefault("headers", {}).update(headers)


def operations(app: FastAPI) -> dict[tuple[str, str], tuple[Access, bool]]:
    """(path, METHOD) -> (its access, whether admission control bounds it), as the app's
    routes declare them (their guard, `ADMITTED`), for the operations the document lists."""
    ops: dict[tuple[str, str], tuple[Access, bool]] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        facts = (access_of(app, route), admitted in dependency_calls(route.dependant))
        for method in route.methods or ():
            ops.setdefault((route.path_format, method), facts)  # the router takes the first
    return ops


def complete(schema: dict[str, Any], app: FastAPI, settings: Settings) -> dict[str, Any]:
    """Add the layers' statuses to `schema` (FastAPI's own) in place."""
    keyed = settings.api_key is not None
    declared = operations(app)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            access, admission = declared.get((path, method.upper()), (Access.KEYED, False))
            if access is not Access.PAGE:  # the guard's no_unknown_query
                _add(responses, 422, "a query parameter the operation does not take (the "
                                     "detail names it and lists those it takes)")
            if admission:
                _add(responses, 503, "at capacity, or past request_timeout_s")
                _add(responses, 408, "the request body did not arrive within "
                                     "request_timeout_s")
            if keyed and not access.is_open(settings.metrics_public):
                op["security"] = [{"bearer": []}, {"apiKey": []}]
                _add(responses, 401, "API key missing or wrong", headers=_CHALLENGE)
            for status, resp in responses.items():
                if status[0] in "45":  # every error body is problem+json, FastAPI's 422 too
                    resp["content"] = {MEDIA_TYPE: {"schema": {"$ref": _REF}}}
                if status == "503":  # not loaded, at capacity, timed out: all say when
                    resp["headers"] = _RETRY_AFTER
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if keyed:
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    _style_parameter(schema)
    _model_parameter(schema, list(settings.model_paths))
    _optimize_bounds(schema, settings)
    return schema


def _optimize_bounds(schema: dict[str, Any], settings: Settings) -> None:
    """POST /optimize's `max_side` and `time_limit_s` are bounded by this server's settings
    (TRAINER_OPTIMIZE_MAX_SIDE, _MAX_SECONDS), below the route's own static bounds: the
    document states the bound the server holds requests to."""
    bound = {"max_side": settings.trainer_optimize_max_side,
             "time_limit_s": settings.trainer_optimize_max_seconds}
    op = schema.get("paths", {}).get("/optimize", {}).get("post") or {}
    for param in op.get("parameters", []):
        if param["name"] in bound and param["in"] == "query":
            _set_maximum(param["schema"], bound[param["name"]])


def _set_maximum(schema: dict[str, Any], maximum: float) -> None:
    """`maximum` on a parameter's schema, inside its `anyOf` when it is optional (null)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") in ("integer", "number"):
            branch["maximum"] = min(branch.get("maximum", maximum), maximum)


def _model_parameter(schema: dict[str, Any], served: list[str]) -> None:
    """`model` names one of the served models (fixed by the settings for the app's life): the
    routes take any string so that another gets the 404 that lists them."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["name"] == "model" and param["in"] == "query":
                    param["schema"] = {"type": "string", "title": "Model", "enum": served}


def _style_parameter(schema: dict[str, Any]) -> None:
    """`style` is required and follows the spec grammar (POST /stylize and POST /videos).
    The routes declare it optional so that a missing one reaches parse_style_spec, whose 422
    lists the valid styles."""
    for param in _style_params(schema):
        param["required"] = True
        param["schema"] = {"type": "string", "title": "Style", "minLength": 1,
                           "maxLength": MAX_SPEC_CHARS, "pattern": STYLE_SPEC_PATTERN}
        param["examples"] = _style_examples(["candy", "mosaic"])  # the shipped model's


def _style_params(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    paths = schema.get("paths", {})
    for op in (paths.get(p, {}).get("post") for p in ("/stylize", "/videos")):
        yield from (param for param in (op or {}).get("parameters", [])
                    if param["name"] == "style")


def _style_examples(names: list[str]) -> dict[str, Any]:
    """One style and a blend of two, from `names` (a model's, in its order)."""
    examples: dict[str, Any] = {"one": {"value": names[0]}}
    if len(names) > 1:
        examples["blend"] = {"value": f"{names[0]}:0.7,{names[1]}:0.3"}
    return examples


def _served_style_examples(schema: dict[str, Any], names: list[str]) -> None:
    """The `style` examples name styles the default model has, so the docs page's "Try it
    out" and the examples a client or a fuzzer takes from the document are requests this
    server accepts (a custom model has no candy). Set on every read of the document: a
    reload or a style edit changes the styles."""
    for param in _style_params(schema) if names else ():  # not loaded: the shipped names
        param["examples"] = _style_examples(names)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            app.openapi_schema = complete(build(), app, settings)
        engine = state_of(app).engine
        _served_style_examples(app.openapi_schema, engine.style_names if engine else [])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
