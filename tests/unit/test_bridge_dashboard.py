"""``/ui``: the dashboard's files, served from the package, loading nothing from elsewhere.

No NATS: the files need none (the page calls the API with the user's credential).
"""

import re

import httpx

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.dashboard import ui_files

IMPORT = re.compile(r"""(?:from|import)\s+["']([^"']+)["']""")


def client() -> httpx.AsyncClient:
    app = create_app(BridgeSettings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge")


async def test_ui_redirects_to_its_index_which_forbids_other_origins() -> None:
    async with client() as c:
        moved = await c.get("/ui")
        assert (moved.status_code, moved.headers["location"]) == (308, "/ui/")
        index = await c.get("/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert '<script type="module" src="app.js">' in index.text


def test_every_module_imports_only_files_of_the_dashboard() -> None:
    files = ui_files()
    modules = [name for name in files if name.endswith(".js")]
    assert {"app.js", "api.js", "views/agents.js", "views/tail.js"} <= set(modules)
    for name in modules:
        text = files[name].decode()
        assert "http://" not in text, name
        assert "https://" not in text, name
        folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        for target in IMPORT.findall(text):
            parts = (folder + target).split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in (".", ""):
                    resolved.append(part)
            assert "/".join(resolved) in files, (name, target)


async def test_each_file_is_served_with_its_type_and_nothing_else_is() -> None:
    async with client() as c:
        for name in ui_files():
            served = await c.get(f"/ui/{name}")
            assert served.status_code == 200, name
            kind = {"js": "text/javascript", "css": "text/css", "html": "text/html"}
            assert served.headers["content-type"].startswith(kind[name.rsplit(".", 1)[1]])
        for missing in ("nope.js", "../pyproject.toml", "%2e%2e/app.py", "views/../../auth.py"):
            refused = await c.get(f"/ui/{missing}")
            assert refused.status_code == 404, missing
            assert refused.headers["content-type"] == "application/problem+json"
