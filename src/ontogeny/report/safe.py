"""Safe embedding of data into the report's HTML, and the pages' content-security policy.

Why: the report pastes figure JSON and lineage data into `<script>` elements. A string inside that data
holding `</script>` would end the element early and let whatever follows run as a new script (issue
16: a planted `figures/*.json` did). JSON may contain `<`, `>` and `&` only inside strings, so writing
them as `\\u003c`, `\\u003e`, `\\u0026` (and U+2028/U+2029, which end a JavaScript line) gives the same
value to `JSON.parse`/JavaScript and no markup to the HTML parser: no `</script>`, no `<!--`.

Defence in depth: every page carries a Content-Security-Policy that allows only the inline scripts it
was built with (by their SHA-256), no network access at all, and styles/images inline only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from typing import Any

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj: Any) -> str:
    """JSON text safe to paste inside `<script>`: an object, or a JSON string already serialised."""
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"), allow_nan=False)
    if isinstance(obj, str):
        json.loads(text)  # refuse anything that is not JSON: it would be pasted as code
    for ch, esc in _ESCAPES.items():
        text = text.replace(ch, esc)
    return text


def script_hash(code: str) -> str:
    """The CSP source expression of one inline script's exact text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"


def csp_meta(scripts: Iterable[str]) -> str:
    """A `<meta>` Content-Security-Policy allowing exactly these inline scripts and nothing remote."""
    hashes = " ".join(sorted({script_hash(s) for s in scripts})) or "'none'"
    policy = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
              "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")
    return f"<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">"


def page(title: str, body: str, scripts: list[str], head_css: str = "") -> str:
    """A whole HTML page: `scripts` (inline code) go at the end of the body, each allowed by the CSP."""
    import html

    for s in scripts:
        if "</script" in s.lower() or "<!--" in s:
            raise ValueError("an inline script holds '</script' or '<!--': embed data with script_json")
    tags = "".join(f"<script>{s}</script>" for s in scripts)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>" + csp_meta(scripts) +
            f"<title>{html.escape(title)}</title><style>{head_css}</style></head><body>{body}{tags}</body></html>")
