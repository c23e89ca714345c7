"""``/docs``, ``/redoc`` and ``/openapi.json`` work offline and are labelled in the metrics.

No NATS: the documentation pages need none.
"""

import re
from urllib.parse import urlsplit

import httpx
import pytest

from agent_orchestrator.bridge import BridgeSettings, create_app

ASSET_URL = re.compile(r'(?:src|href)="([^"]+)"')


def client() -> httpx.AsyncClient:
    app = create_app(BridgeSettings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge")


@pytest.mark.parametrize(("page", "assets"), [("/docs", 3), ("/redoc", 2)])
async def test_a_docs_page_loads_only_assets_the_bridge_serves(page: str, assets: int) -> None:
    async with client() as c:
        html = await c.get(page)
        assert html.status_code == 200
        assert "http://" not in html.text
        assert "https://" not in html.text
        urls = ASSET_URL.findall(html.text)
        assert len(urls) == assets
        for url in urls:
            assert not urlsplit(url).netloc, url
            served = await c.get(url)
            assert served.status_code == 200, url
            assert len(served.content) > 1000
            kind = served.headers["content-type"]
            expected = {"js": "text/javascript", "css": "text/css", "png": "image/png"}
            assert kind.startswith(expected[url.rsplit(".", 1)[-1]]), (url, kind)


async def test_swagger_ui_reads_the_bridges_openapi_document() -> None:
    async with client() as c:
        html = (await c.get("/docs")).text
        assert "url: '/openapi.json'" in html
        assert '"validatorUrl": null' in html
        spec = await c.get("/openapi.json")
        redirect = await c.get("/docs/oauth2-redirect")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.")
    assert redirect.status_code == 200


async def test_an_unknown_asset_is_404() -> None:
    async with client() as c:
        for name in ("nothing.js", "docs.py", "%2e%2e%2fdocs.py"):
            response = await c.get(f"/docs/assets/{name}")
            assert response.status_code == 404, name
            assert response.headers["content-type"] == "application/problem+json"


async def test_metrics_label_docs_openapi_and_assets_by_route() -> None:
    async with client() as c:
        for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
            assert (await c.get(path)).status_code == 200
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
            assert (await c.get(f"/docs/assets/{name}")).status_code == 200
        metrics = (await c.get("/metrics")).text

    def count(route: str) -> float:
        line = f'ao_bridge_requests_total{{method="GET",route="{route}",status="200"}} '
        found = [float(s[len(line) :]) for s in metrics.splitlines() if s.startswith(line)]
        return found[0] if found else 0.0

    assert count("/docs") == 1
    assert count("/openapi.json") == 1
    assert count("/redoc") == 1
    assert count("/docs/oauth2-redirect") == 1
    assert count("/docs/assets/{name}") == 3
    assert count("<unmatched>") == 0


async def test_behind_a_proxy_prefix_the_pages_point_under_it() -> None:
    app = create_app(BridgeSettings())
    transport = httpx.ASGITransport(app=app, root_path="/bridge")
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
        html = (await c.get("/docs")).text
        spec = (await c.get("/openapi.json")).json()
    assert "url: '/bridge/openapi.json'" in html
    assert all(url.startswith("/bridge/docs/assets/") for url in ASSET_URL.findall(html))
    assert spec["servers"][0]["url"] == "/bridge"
