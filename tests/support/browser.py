"""Headless Chromium for the dashboard's tests: Debian's package driven by Playwright.

Playwright's own browser downloads are not used (``playwright install`` is never needed): the
tests launch the system's Chromium, and skip with the reason when it or Playwright is missing.
"""

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The Chromium to drive: AO_CHROMIUM, /usr/bin/chromium, or one on PATH."""
    for candidate in (os.environ.get("AO_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no Chromium here (apt-get install chromium; .ci/run installs it)"
    return None
