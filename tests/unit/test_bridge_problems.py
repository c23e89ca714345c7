"""problem+json's one shape, JSON bodies and preconditions: the bridge's rules without NATS."""

from typing import Any

import httpx
import pytest
from fastapi import Body, FastAPI
from pydantic import BaseModel

from agent_orchestrator.bridge.error_handlers import install_error_handlers
from agent_orchestrator.bridge.json_body import MAX_JSON_DEPTH, JsonBodyRoute, is_json, parse_json
from agent_orchestrator.bridge.problems import ProblemError, field_errors_and_details
from agent_orchestrator.bridge.replies import precondition_failed
from agent_orchestrator.bridge.routes import ROUTES


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    ("given", "errors", "details"),
    [
        (None, [], None),
        (
            [{"path": "name", "message": "too short"}, {"path": "type"}],
            [
                {"path": "name", "message": "too short"},
                {"path": "type", "message": "the message"},
            ],
            None,
        ),
        ([{"path": "", "message": "m"}], [{"path": "body", "message": "m"}], None),
        ({"from": "PAUSED", "to": "READY"}, [], {"from": "PAUSED", "to": "READY"}),
        (["odd"], [], {"value": ["odd"]}),
    ],
)
def test_what_an_error_carries_splits_into_field_errors_and_details(
    given: Any, errors: list[dict[str, str]], details: dict[str, Any] | None
) -> None:
    assert field_errors_and_details(given, "the message") == (errors, details)


@pytest.mark.parametrize(
    ("content_type", "json"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("text/json", False),
        (None, False),
        ("", False),
    ],
)
def test_which_content_types_are_json(content_type: str | None, json: bool) -> None:
    assert is_json(content_type) is json


def test_json_nested_to_the_limit_parses_and_deeper_is_a_400_naming_it() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(ProblemError) as deep:
        parse_json(nested(MAX_JSON_DEPTH + 2))
    assert (deep.value.status, deep.value.code) == (400, "validation_error")
    assert str(MAX_JSON_DEPTH) in deep.value.detail
    assert deep.value.details == {"max_depth": MAX_JSON_DEPTH}
    with pytest.raises(ProblemError) as very_deep:
        parse_json(b"[" * 100_000)
    assert str(MAX_JSON_DEPTH) in very_deep.value.detail


def test_invalid_json_is_a_400_that_says_where() -> None:
    with pytest.raises(ProblemError) as bad:
        parse_json(b'{"name": ')
    assert (bad.value.status, bad.value.code) == (400, "validation_error")
    assert "line 1 column" in bad.value.detail
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_a_conflict_is_a_failed_precondition_when_it_names_the_if_match_field() -> None:
    state = next(r for r in ROUTES if r.if_match == "expected_revision")
    agent = next(r for r in ROUTES if r.if_match == "expected_version")
    plain = next(r for r in ROUTES if r.if_match is None and r.method == "POST")
    stale = {"expected_revision": 1, "revision": 2}
    assert precondition_failed(state, stale)
    assert not precondition_failed(agent, stale)
    assert not precondition_failed(state, {"idempotency_key": "k"})
    assert not precondition_failed(state, None)
    assert not precondition_failed(plain, stale)


class Thing(BaseModel):
    name: str


def json_app() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    async def create(thing: Thing | None = Body(None)) -> dict[str, Any]:
        return {"thing": thing.model_dump() if thing else None}

    app.router.add_api_route(
        "/things", create, methods=["POST"], route_class_override=JsonBodyRoute
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_body_route_takes_json_and_refuses_other_media_types_with_415() -> None:
    async with json_app() as c:
        ok = await c.post("/things", json={"name": "n"})
        charset = await c.post(
            "/things",
            content=b'{"name": "n"}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        empty = await c.post("/things", headers={"content-type": "text/plain"})
        text = await c.post(
            "/things", content=b'{"name": "n"}', headers={"content-type": "text/plain"}
        )
        bare = await c.post("/things", content=b'{"name": "n"}')
        deep = await c.post(
            "/things",
            content=nested(MAX_JSON_DEPTH + 5),
            headers={"content-type": "application/json"},
        )
    assert ok.json() == charset.json() == {"thing": {"name": "n"}}
    assert empty.json() == {"thing": None}
    for refused, said in ((text, "not text/plain"), (bare, "it is missing")):
        assert refused.status_code == 415
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["code"] == "validation_error"
        assert "application/json" in problem["detail"]
        assert said in problem["detail"]
        assert problem["errors"] == [
            {"path": "header.Content-Type", "message": f"must be application/json; {said}"}
        ]
    assert deep.status_code == 400
    assert deep.json()["code"] == "validation_error"
    assert f"deeper than {MAX_JSON_DEPTH} levels" in deep.json()["detail"]
