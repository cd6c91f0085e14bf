"""Data pasted into the report's <script> cannot end the script element; pages carry a strict CSP."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from ontogeny.report.html import build_report
from ontogeny.report.safe import csp_meta, page, script_hash, script_json

EVIL = "</script><script>document.title='PWNED'</script><!-- "
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.n, self.bodies, self._in = 0, [], False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.n += 1
            self._in = True
            self.bodies.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.bodies[-1] += data


def test_script_json_round_trips_and_hides_markup():
    obj = {"t": EVIL, "u": "a\u2028b & c > d"}
    text = script_json(obj)
    assert "</" not in text and "<!--" not in text and "<" not in text and "\u2028" not in text
    assert json.loads(text) == obj  # the same value once parsed
    assert json.loads(script_json(json.dumps(obj))) == obj
    with pytest.raises(ValueError):
        script_json("alert(1)")  # a string that is not JSON is refused, not pasted as code
    with pytest.raises(ValueError, match="script_json"):
        page("t", "", ["var x = '</script>'"])
    assert script_hash("x") in csp_meta(["x"]) and "default-src 'none'" in csp_meta([])


@pytest.fixture
def planted(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    fig = {"data": [{"type": "scatter", "x": [1, 2], "y": [1, 2], "name": EVIL}], "layout": {"title": {"text": EVIL}}}
    (run / "figures" / "series_training.json").write_text(json.dumps(fig))
    build_report(run, png=False, features=False)
    return run / "report" / "index.html"


def test_planted_figure_cannot_add_a_script(planted):
    text = planted.read_text()
    parser = Scripts()
    parser.feed(text)
    assert parser.n == 2  # plotly.js and the one figure: the planted text opened no element
    data = json.loads(re.match(r"\(function\(\)\{var f=(.*?);var d=", parser.bodies[1]).group(1))
    assert data["layout"]["title"]["text"] == EVIL  # the text survives as data, intact
    assert EVIL not in text
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert all(script_hash(b) in policy for b in parser.bodies)  # exactly these scripts may run


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser installs it)")
def test_csp_blocks_a_script_added_behind_the_builder(planted):
    sync_api = pytest.importorskip("playwright.sync_api")
    text = planted.read_text()
    tampered = planted.with_name("tampered.html")
    tampered.write_text(text.replace("<main>", "<main><script>document.title='PWNED'</script>", 1))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page()
        errors, requests = [], []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("request", lambda r: requests.append(r.url))
        pg.goto(planted.as_uri())
        pg.wait_for_timeout(500)
        clean_title, clean_errors, drawn = pg.title(), list(errors), pg.locator("div.plot .main-svg").count()
        errors.clear()
        pg.goto(tampered.as_uri())
        pg.wait_for_timeout(300)
        tampered_title = pg.title()
        browser.close()
    assert clean_title == "ontogeny report" and clean_errors == [] and drawn >= 1
    assert tampered_title == "ontogeny report"  # the CSP refused the added inline script
    assert any("Content Security Policy" in e for e in errors)
    assert all(u.startswith("file://") for u in requests)  # nothing fetched from a network
