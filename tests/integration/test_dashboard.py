"""The dashboard at /ui, driven in headless Chromium against the real bridge and service."""

import json
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats.aio.client
import pytest
import pytest_asyncio

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.bridge.server import EmbeddedBridge
from agent_orchestrator.runtime import free_port
from tests.support.agents import new_agent, ready_agent, unique
from tests.support.browser import CHROMIUM_ARGS, chromium_path, why_no_browser
from tests.support.calls import ok
from tests.support.polling import eventually
from tests.support.servers import ServerUrls
from tests.support.workers import worker_running

pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))

if why_no_browser() is None:
    from playwright.async_api import Browser, Page, async_playwright, expect

    expect.set_options(timeout=15_000)
else:  # the module is skipped; these names only keep it importable
    Browser = Page = Any

NC = nats.aio.client.Client
TIMEOUT_MS = 15_000  # for actions; assertions wait as long (expect.set_options)
# What a page may log without failing its test: the network errors a test provokes.
EXPECTED_CONSOLE = ("Failed to load resource",)


async def start_bridge(nc: NC, servers: ServerUrls, **settings: Any) -> EmbeddedBridge:
    bridge = EmbeddedBridge(
        BridgeSettings(nats_url=servers.nats_url, **settings), port=free_port(), nc=nc
    )
    await bridge.start()
    return bridge


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_ARGS)
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page on a laptop-sized screen; a script error or CSP violation fails the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    opened = await context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE)
            else None
        ),
    )
    yield opened
    await context.close()
    assert problems == []


async def agent_in(nc: NC, name: str, kind: str, status: str = "CREATED", **fields: Any) -> str:
    """A new agent moved to ``status`` (CREATED, READY, ACTIVE or PAUSED)."""
    if status == "CREATED":
        return await new_agent(nc, name=name, type=kind, **fields)
    agent_id = await ready_agent(nc, name=name, type=kind, **fields)
    if status in ("ACTIVE", "PAUSED"):
        await ok(nc, "agent.activate", {"agent_id": agent_id})
    if status == "PAUSED":
        await ok(nc, "agent.pause", {"agent_id": agent_id})
    return agent_id


async def task_when(nc: NC, task_id: str, done: Any, what: str) -> Any:
    return await eventually(
        lambda: ok(nc, "task.get", {"task_id": task_id}), done, within=20, what=what
    )


async def two_versions(nc: NC, name: str, agent_type: str) -> str:
    """A template whose version 2 changes the default model (with a changelog); its id."""
    body = {"name": name, "agent_type": agent_type, "default_configuration": {"model": "small"}}
    template_id = str((await ok(nc, "template.create", body))["template_id"])
    change = {"default_configuration": {"model": "large"}, "changelog": "a larger model"}
    await ok(nc, "template.update", {"template_id": template_id, **change})
    return template_id


def rows(page: Page) -> Any:
    return page.locator("table.agents tbody tr[data-agent-id]")


async def test_the_list_filters_counts_and_keeps_its_filters_in_the_url(
    nc: NC, bridge_url: str, page: Page
) -> None:
    kind = unique("ui")
    waiting = await agent_in(nc, "alpha", kind)
    await agent_in(nc, "beta", kind, "READY")
    await agent_in(nc, "gamma-x", kind, "READY")
    await page.goto(f"{bridge_url}/ui/#/agents?type={kind}")
    await expect(rows(page)).to_have_count(3)
    await expect(page.locator("button[data-status=READY]")).to_have_text("READY 2")
    await expect(page.locator("button[data-status=CREATED]")).to_have_text("CREATED 1")

    await page.select_option("#filter-status", "READY")
    await expect(rows(page)).to_have_count(2)
    await expect(page).to_have_url(re.compile(r"status=READY"))
    await page.fill("#filter-name", "GAMMA")
    await expect(rows(page)).to_have_count(1)
    await expect(rows(page).first).to_contain_text("gamma-x")

    # The filters live in the URL: a reload (or a shared link) shows the same view.
    await page.reload()
    await expect(page.locator("#filter-name")).to_have_value("GAMMA")
    await expect(page.locator("#filter-status")).to_have_value("READY")
    await expect(rows(page)).to_have_count(1)

    # Live: an agent initialized elsewhere changes its row and the counts, no reload.
    await page.select_option("#filter-status", "")
    await page.fill("#filter-name", "")
    await expect(rows(page)).to_have_count(3)
    await ok(nc, "agent.initialize", {"agent_id": waiting})
    row = page.locator(f'tr[data-agent-id="{waiting}"] .agent-status')
    await expect(row).to_contain_text("READY")
    await expect(page.locator("button[data-status=READY]")).to_have_text("READY 3")


async def test_an_agent_page_shows_its_details_and_a_live_event(
    nc: NC, bridge_url: str, page: Page
) -> None:
    agent_id = await agent_in(nc, "detailed", "ui-agent", "READY", configuration={"model": "small"})
    await page.goto(f"{bridge_url}/ui/#/agents")
    await page.goto(f"{bridge_url}/ui/#/agents/{agent_id}")
    await expect(page.locator("h1")).to_contain_text("detailed")
    await expect(page.locator("h1")).to_contain_text("READY")
    await expect(page.locator("#section-details")).to_contain_text('"model": "small"')
    await expect(page.locator("h1 .live")).to_have_text("live")
    timeline = page.locator("ol.timeline li")
    await expect(timeline.filter(has_text="INITIALIZING → READY")).to_have_count(1)
    await expect(timeline.filter(has_text="state_updated")).to_have_count(0)

    marker = uuid.uuid4().hex
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"marker": marker}})
    await expect(timeline.filter(has_text="state_updated")).to_have_count(1)
    await expect(page.locator("#section-state")).to_contain_text(marker)


async def test_restoring_a_checkpoint_says_what_it_overwrites_then_restores(
    nc: NC, bridge_url: str, page: Page
) -> None:
    agent_id = await agent_in(nc, "restorable", "ui-restore", "READY")
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": 1}})
    await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id, "label": "before"})
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": 2, "extra": "x"}})
    revision = (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["revision"]
    await page.goto(f"{bridge_url}/ui/#/agents/{agent_id}")
    await expect(page.locator(".state-revision")).to_have_text(str(revision))

    await page.locator("tr[data-checkpoint-id]").get_by_role("button", name="Restore").click()
    dialog = page.locator("dialog[open]")
    await expect(dialog).to_contain_text(f"overwrites the current state, revision {revision}")
    await expect(dialog.locator("tr.changed")).to_contain_text("step")
    await expect(dialog.locator("tr.removed")).to_contain_text("extra")
    await dialog.get_by_role("button", name="Restore").click()

    await expect(page.locator(".state-revision")).to_have_text(str(revision + 1))
    state = await ok(nc, "agent.state.get", {"agent_id": agent_id})
    assert (state["state"], state["revision"]) == ({"step": 1}, revision + 1)


async def test_the_inbox_answers_a_task_that_asks_for_input(
    nc: NC, servers: ServerUrls, bridge_url: str, page: Page
) -> None:
    agent_id = await agent_in(nc, "asker", "ui-inbox", "ACTIVE")
    schema = {
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
        "required": ["approved"],
    }

    async def ask(run: Any) -> Any:
        # What a worker sends to ask a person (task.request_input), then its answer's arrival.
        await ok(
            nc,
            "task.request_input",
            {
                "task_id": str(run.task_id),
                "attempt": run.attempt,
                "prompt": "Ship the release?",
                "input_schema": schema,
            },
        )
        answered = await task_when(
            nc, str(run.task_id), lambda task: task["input_answers"], "an answer"
        )
        return answered["input_answers"][-1]["input"]

    async with worker_running(servers, agent_id, ask):
        task = await ok(nc, "agent.execute", {"agent_id": agent_id, "input": "release 1.2"})
        task_id = str(task["task_id"])
        await page.goto(f"{bridge_url}/ui/#/tasks")
        question = page.locator(f'.inbox-item[data-task-id="{task_id}"]')
        await expect(question).to_contain_text("Ship the release?")
        await question.get_by_label("approved").check()
        await question.get_by_label("note").fill("ship it")
        await question.get_by_role("button", name="Send answer").click()
        await expect(question).to_have_count(0)
        finished = await task_when(
            nc, task_id, lambda task: task["status"] == "SUCCEEDED", "task SUCCEEDED"
        )
    assert finished["result"] == {"approved": True, "note": "ship it"}
    row = page.locator(f'table.tasks tr[data-task-id="{task_id}"]')
    await expect(row).to_contain_text("SUCCEEDED")


async def test_bulk_pause_asks_then_pauses_the_selected_agents(
    nc: NC, bridge_url: str, page: Page
) -> None:
    kind = unique("ui-bulk")
    first = await agent_in(nc, "first", kind, "ACTIVE")
    second = await agent_in(nc, "second", kind, "ACTIVE")
    untouched = await agent_in(nc, "third", kind, "ACTIVE")
    await page.goto(f"{bridge_url}/ui/#/agents?type={kind}")
    await expect(rows(page)).to_have_count(3)
    pause = page.get_by_role("button", name="Pause selected")
    await expect(pause).to_be_disabled()
    await page.get_by_label("Select first").check()
    await page.get_by_label("Select second").check()
    await pause.click()

    dialog = page.locator("dialog[open]")
    await expect(dialog).to_contain_text("Pause these 2 agents?")
    await expect(dialog.locator("li")).to_have_count(2)
    await dialog.get_by_role("button", name="Pause 2").click()

    await expect(page.locator(".bulk-report")).to_have_text("Pause: 2 done, 0 failed.")
    for agent_id in (first, second):
        await expect(page.locator(f'tr[data-agent-id="{agent_id}"] .agent-status')).to_contain_text(
            "PAUSED"
        )
        assert (await ok(nc, "agent.get", {"agent_id": agent_id}))["status"] == "PAUSED"
    assert (await ok(nc, "agent.get", {"agent_id": untouched}))["status"] == "ACTIVE"


async def test_an_api_error_is_shown_as_its_problem_message(bridge_url: str, page: Page) -> None:
    missing = uuid.uuid4()
    async with httpx.AsyncClient() as http:
        problem = (await http.get(f"{bridge_url}/api/agents/{missing}")).json()
    await page.goto(f"{bridge_url}/ui/#/agents/{missing}")
    shown = page.locator("#errors .problem")
    await expect(shown).to_contain_text(problem["detail"])
    await expect(shown).to_contain_text("404")
    await expect(page.locator("main h1")).to_have_text("This view could not be shown")
    # Keyboard first: Tab reaches the skip link, then the views.
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_text("Skip to content")
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_text("Agents")


async def test_a_template_shows_its_versions_their_agents_and_a_diff(
    nc: NC, bridge_url: str, page: Page
) -> None:
    template_id = await two_versions(nc, unique("tpl"), "ui-tpl")
    for version in (1, 2, 2):
        await agent_in(nc, "user", "ui-tpl", template_id=template_id, template_version=version)
    await page.goto(f"{bridge_url}/ui/#/templates/{template_id}")
    await expect(page.locator('tr[data-version="1"] .uses')).to_have_text("1 agents")
    await expect(page.locator('tr[data-version="2"] .uses')).to_have_text("2 agents")
    await expect(page.locator('tr[data-version="2"]')).to_contain_text("a larger model")
    changed = page.locator(".template-diff tr.changed")
    await expect(changed.filter(has_text="default_configuration.model")).to_contain_text("large")


async def test_the_live_tail_pauses_and_resumes_after_a_reconnect(
    nc: NC, bridge_url: str, page: Page
) -> None:
    agent_id = await agent_in(nc, "tailed", "ui-tail", "READY")
    await page.goto(f"{bridge_url}/ui/#/tail?agent_id={agent_id}&kind=state_updated")
    await expect(page.locator("h1 .live")).to_have_text("live")
    shown = page.locator("ul.tail li")

    async def update(n: int) -> None:
        await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"n": n}})

    await update(1)
    await expect(shown).to_have_count(1)
    await page.get_by_role("button", name="Pause").click()
    await update(2)
    await expect(page.locator(".tail-counter")).to_contain_text("1 held")
    await expect(shown).to_have_count(1)
    await page.get_by_role("button", name="Resume").click()
    await expect(shown).to_have_count(2)

    # A dropped connection resumes after the last event seen: none lost, none twice.
    await page.get_by_role("button", name="Reconnect").click()
    await expect(page.locator("h1 .live")).to_have_text("live")
    await update(3)
    await expect(shown).to_have_count(3)
    ids = await shown.evaluate_all("items => items.map(li => li.dataset.eventId)")
    assert len(set(ids)) == 3


async def test_with_api_keys_the_page_asks_for_a_key_and_shows_its_project_only(
    nc: NC, servers: ServerUrls, page: Page, tmp_path: Path
) -> None:
    project, other = unique("p"), unique("q")
    key = secrets.token_urlsafe(32)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({key: {"name": "dashboard", "project": project}}))
    mine = await agent_in(nc, "mine", "ui-auth", project_id=project)
    await agent_in(nc, "theirs", "ui-auth", project_id=other)
    bridge = await start_bridge(nc, servers, auth="api_keys", api_keys_file=keys)
    try:
        await page.goto(f"{bridge.url}/ui/#/agents?type=ui-auth")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.fill("#credential", key)
        await page.get_by_role("button", name="Sign in").click()
        await expect(rows(page)).to_have_count(1)
        await expect(rows(page).first).to_have_attribute("data-agent-id", mine)
        await expect(page.locator("h1 .live")).to_have_text("live")  # the key reaches the stream
    finally:
        await page.goto("about:blank")  # ends its event stream, so the bridge can stop
        await bridge.stop()


async def test_screenshots_of_the_main_views(
    nc: NC, bridge_url: str, page: Page, tmp_path: Path
) -> None:
    """PNGs of each view; into AO_DASHBOARD_SCREENSHOTS (docs/ for the documentation) if set."""
    folder = Path(os.environ.get("AO_DASHBOARD_SCREENSHOTS") or tmp_path)
    template_id = await two_versions(nc, "researcher", "llm")
    made = {"writer": "ACTIVE", "reviewer": "PAUSED", "planner": "READY", "scout": "CREATED"}
    ids = {
        name: await agent_in(nc, name, "llm", status, project_id="demo", template_id=template_id)
        for name, status in made.items()
    }
    agent_id = ids["writer"]
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": 1, "notes": []}})
    await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id, "label": "after step 1"})
    await ok(
        nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": 2, "notes": ["found"]}}
    )
    question = await ok(
        nc,
        "agent.send",
        {
            "from_agent_id": ids["reviewer"],
            "to_agent_id": agent_id,
            "content": "draft ready?",
            "correlation_id": "review-1",
        },
    )
    await ok(
        nc,
        "agent.send",
        {
            "from_agent_id": agent_id,
            "to_agent_id": ids["reviewer"],
            "content": "yes, v2",
            "correlation_id": "review-1",
            "reply_to": question["communication_id"],
        },
    )
    await ok(nc, "agent.execute", {"agent_id": agent_id, "input": "summarize the findings"})
    views = {
        "dashboard-agents.png": "#/agents?project_id=demo",
        "dashboard-agent.png": f"#/agents/{agent_id}",
        "dashboard-tasks.png": f"#/tasks?agent_id={agent_id}",
        "dashboard-templates.png": f"#/templates/{template_id}",
        "dashboard-tail.png": "#/tail",
    }
    for name, view in views.items():
        await page.goto(f"{bridge_url}/ui/{view}")
        await expect(page.locator("main h1")).to_be_visible()
        if view == "#/tail":
            await expect(page.locator("h1 .live")).to_have_text("live")
            for step in (3, 4, 5):
                await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": step}})
            await ok(nc, "agent.pause", {"agent_id": agent_id})
            await expect(page.locator("ul.tail li")).to_have_count(4)
        await page.wait_for_timeout(500)  # the last rows and badges settle
        await page.screenshot(path=folder / name)
        assert (folder / name).stat().st_size > 5_000
        if name == "dashboard-agent.png":  # and its state, checkpoints and conversations
            await page.get_by_role("button", name="state", exact=True).click()
            await page.screenshot(path=folder / "dashboard-agent-state.png")
