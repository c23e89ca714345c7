"""The bridge's OpenAPI document: FastAPI's, with problem+json errors and without the 422
that the bridge never answers (invalid input is a 400 problem)."""

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agent_orchestrator.bridge.problems import PROBLEM_MEDIA_TYPE, Problem


def error_responses(statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route for these error statuses: each a :class:`Problem`."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


def problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: the document with problem+json error responses and without FastAPI's
    unused 422 and its schemas, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for code, response in responses.items():
                    content = response.get("content", {})
                    if code[0] in "45" and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    return openapi


__all__ = ["error_responses", "problem_openapi"]
