"""The report in headless Chromium: contents, figures drawn, the feature browser and a carrier's page.

Opens `report/index.html` of the tiny study, follows the link to the feature browser, searches for
carriers, opens the first one's page through the table, and checks its highlighted tokens and its
checkpoint sequence; no page shows `nan` and none logs a console error. Screenshots go to
benchmarks/results/.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def check_report_in_browser(run_dir: Path, shots: Path = SCREENSHOT_DIR) -> dict:
    """Drive the report like a reader; returns what it saw (the test asserts on it)."""
    from playwright.sync_api import sync_playwright

    index = json.loads((run_dir / "features" / "index.json").read_text())
    steps = index["steps"]
    seen: dict = {"errors": [], "nan_pages": [], "requests": []}
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.on("request", lambda r: seen["requests"].append(r.url))

        def no_nan():
            if re.search(r"\bnan\b", page.inner_text("body"), re.IGNORECASE):
                seen["nan_pages"].append(page.url)

        page.goto((run_dir / "report" / "index.html").as_uri())
        page.wait_for_timeout(1500)
        seen["n_divs"] = page.locator("div.plot").count()
        seen["n_drawn"] = page.locator("div.plot .main-svg").count()
        seen["toc"] = page.locator("#toc a").count()
        no_nan()
        page.screenshot(path=str(shots / "report_screenshot.png"))
        page.click("#browser ~ p a.browse")
        page.wait_for_selector("#body tr")
        seen["rows_all"] = page.locator("#body tr").count()
        page.fill("#q", "carrier")
        page.wait_for_timeout(200)
        seen["rows_carrier"] = page.locator("#body tr").count()
        no_nan()
        page.screenshot(path=str(shots / "report_feature_browser.png"))
        first = page.locator("#body tr").first
        seen["carrier_id"] = int(first.get_attribute("data-id"))
        first.locator("a.open").click()
        page.wait_for_selector("table.lifeline")
        seen["url"] = page.url
        seen["highlighted"] = page.locator(".tok.hl").count()
        seen["lifeline_steps"] = [int(s) for s in page.locator("table.lifeline tr[data-step]").evaluate_all(
            "rs => rs.map(r => r.dataset.step)")]
        seen["snapshot_steps"] = [int(s) for s in page.locator("section.snap").evaluate_all(
            "ss => ss.map(s => s.dataset.step)")]
        seen["carrier_text"] = page.inner_text("table.facts")
        no_nan()
        page.screenshot(path=str(shots / "report_feature_page.png"), full_page=True)
        browser.close()
    seen["steps"] = steps
    seen["carriers"] = [r["lineage_id"] for r in index["lineages"] if r["is_carrier"]]
    return seen


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser installs it)")
def test_report_and_a_carrier_page_in_chromium(tiny_study):
    pytest.importorskip("playwright.sync_api")
    run_dir = tiny_study[0]
    seen = check_report_in_browser(run_dir)
    assert seen["errors"] == [] and seen["nan_pages"] == []
    assert all(u.startswith("file://") for u in seen["requests"])  # offline: nothing fetched
    assert seen["n_divs"] >= 5 and seen["n_drawn"] >= seen["n_divs"] and seen["toc"] > seen["n_divs"]
    assert seen["carriers"], "the tiny study has no carrier (tiny_config needs scaffold.min_reach=0)"
    assert seen["rows_carrier"] == min(len(seen["carriers"]), 50) and seen["rows_all"] > seen["rows_carrier"]
    assert seen["carrier_id"] in seen["carriers"] and seen["url"].endswith(f"lineage_{seen['carrier_id']:06d}.html")
    assert "carrier" in seen["carrier_text"]
    assert seen["highlighted"] >= len(seen["snapshot_steps"]) >= 2
    assert seen["lifeline_steps"] == seen["steps"]
    assert set(seen["snapshot_steps"]) <= set(seen["steps"]) and seen["snapshot_steps"] == sorted(seen["snapshot_steps"])
