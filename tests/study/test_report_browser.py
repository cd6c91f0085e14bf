"""The report in headless Chromium: it loads without console errors and draws its figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_renders_in_chromium(tiny_study):
    sync_api = pytest.importorskip("playwright.sync_api")
    page_path = tiny_study[0] / "report" / "index.html"
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        page.wait_for_timeout(1500)
        n_divs = page.locator("div.plot").count()
        n_drawn = page.locator("div.plot .main-svg").count()
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "report_screenshot.png"), full_page=False)
        browser.close()
    assert errors == []
    assert n_divs >= 5
    assert n_drawn >= n_divs  # each figure div holds at least one drawn plotly svg
