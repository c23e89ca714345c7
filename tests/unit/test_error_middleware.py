"""A handler that raises never leaves the caller waiting: pure handler test, in-memory broker."""

import json

from faststream.nats import NatsBroker, NatsRouter, TestNatsBroker
from pydantic import BaseModel

from agent_orchestrator.contracts.subjects import SERVICE_ERROR_CODE_HEADER
from agent_orchestrator.domain.errors import NotFound
from agent_orchestrator.handlers.errors import build_error_middleware


class Ping(BaseModel):
    mode: str


async def test_domain_errors_and_bugs_become_contract_replies() -> None:
    router = NatsRouter(middlewares=[build_error_middleware()])

    @router.subscriber("test.ping")
    async def ping(body: Ping) -> dict[str, str]:
        if body.mode == "missing":
            raise NotFound("no such thing", details={"id": "x"})
        if body.mode == "bug":
            raise ZeroDivisionError("oops")
        return {"pong": body.mode}

    broker = NatsBroker()
    broker.include_router(router)
    async with TestNatsBroker(broker) as test_broker:
        fine = await test_broker.request({"mode": "ok"}, "test.ping")
        assert json.loads(fine.body) == {"pong": "ok"}

        missing = await test_broker.request({"mode": "missing"}, "test.ping")
        assert json.loads(missing.body) == {
            "error": {"code": "not_found", "message": "no such thing", "details": {"id": "x"}}
        }
        assert missing.headers[SERVICE_ERROR_CODE_HEADER] == "404"

        bug = await test_broker.request({"mode": "bug"}, "test.ping")
        error = json.loads(bug.body)["error"]
        assert error["code"] == "internal"
        assert "oops" not in error["message"]
        assert error["trace_id"] == bug.headers["Trace-Id"]
        assert bug.headers[SERVICE_ERROR_CODE_HEADER] == "500"

        invalid = await test_broker.request({"mode": 3}, "test.ping")
        assert json.loads(invalid.body)["error"]["code"] == "validation_error"
        assert invalid.headers[SERVICE_ERROR_CODE_HEADER] == "400"
