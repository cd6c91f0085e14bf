"""Feature-page data: what a lineage's feature *is* at a few checkpoints of its life, as JSON.

Why: a dashboard (SAEDashboard, Neuronpedia) shows one feature of one SAE; a lineage is one feature
followed through training, so its page shows the same evidence at several checkpoints side by side:
its life line (alive checkpoints, matching r and decoder cosine at each transition, firing frequency),
and per chosen checkpoint the top-activating contexts of the evaluation set (window around the token,
activation per token), the histogram of its non-zero activations, and the output tokens its decoder
direction promotes and suppresses through that checkpoint's unembedding (logit effect = W_U d_f, as
SAEDashboard computes it: the final layer norm is not applied).

Inputs, all read from the run directory: `tables/lineages`, `tables/features`, `tables/matches`,
`dictionaries/step_*/<site>/` (SAELens folders), the activation store (`activations/`: the shared
evaluation token ids and per (step, site) activations) and the series (tokenizer, unembedding).
Output: `<out>/lineage_<id>.json` for each chosen lineage and `<out>/index.json` (every lineage's
browser row). A unit of work: a function of its inputs that writes its files atomically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.errors import StoreError
from ontogeny.store import layout
from ontogeny.store.run import write_json
from ontogeny.store.tables import read_table

class FeaturePagesConfig(BaseModel):
    """Which lineages get a page and how much evidence each page shows."""

    model_config = ConfigDict(extra="forbid")

    lineages: list[int] = Field(default_factory=list, description="lineage ids that always get a page")
    n_per_kind: int = Field(5, ge=0, description="largest lineages of each kind (stable, died, born late, "
                                                 "split/merge) given a page, besides every carrier")
    n_checkpoints: int = Field(4, ge=1, description="checkpoints per page (spread over the lineage's life)")
    n_contexts: int = Field(8, ge=1, description="top-activating contexts per checkpoint (one per sequence)")
    before: int = Field(12, ge=0, description="tokens shown before the activating token")
    after: int = Field(4, ge=0, description="tokens shown after the activating token")
    n_logits: int = Field(10, ge=1, description="promoted and suppressed output tokens per checkpoint")
    n_bins: int = Field(20, ge=2, description="bins of the activation histogram")
    chunk_rows: int = Field(8192, ge=1, description="activation rows encoded at once")


def _clean(v: Any) -> Any:
    """JSON-safe value: numpy scalars to Python, non-finite floats to None (said in words on the page)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _kinds(lin: dict[str, Any]) -> list[str]:
    """Kinds of a lineage for choosing pages (a lineage can be several)."""
    out = []
    if lin.get("is_carrier"):
        out.append("carrier")
    if lin.get("fate") == "died":
        out.append("died")
    if lin.get("origin") == "born":
        out.append("born late")
    if lin.get("origin") == "split" or lin.get("fate") == "merged":
        out.append("split/merge")
    if lin.get("all_stable") and lin.get("fate") == "censored" and not lin.get("is_carrier"):
        out.append("stable")
    return out


def select_lineages(lineages: Sequence[dict[str, Any]], mean_firing: dict[int, float], n_per_kind: int,
                    named: Iterable[int] = ()) -> dict[int, list[str]]:
    """Lineage id -> why it has a page: every carrier, the `n_per_kind` largest of each other kind (most
    checkpoints, then highest mean firing frequency), and every id in `named`."""
    by_id = {int(lin["lineage_id"]): lin for lin in lineages}
    chosen: dict[int, list[str]] = {}
    for lid in named:
        if int(lid) not in by_id:
            raise ValueError(f"lineage {lid} named for a feature page is not in tables/lineages "
                             f"(ids 0..{max(by_id) if by_id else 'none'})")
        chosen.setdefault(int(lid), []).append("named")
    for kind in ("carrier", "stable", "died", "born late", "split/merge"):
        members = [lin for lin in lineages if kind in _kinds(lin)]
        members.sort(key=lambda lin: (-int(lin["n_checkpoints"]), -mean_firing.get(int(lin["lineage_id"]), 0.0),
                                      int(lin["lineage_id"])))
        keep = members if kind == "carrier" else members[:n_per_kind]
        for lin in keep:
            chosen.setdefault(int(lin["lineage_id"]), []).append(kind)
    return chosen


def spread(indices: Sequence[int], n: int) -> list[int]:
    """`n` entries of `indices` spread evenly by position, always the first and the last."""
    if len(indices) <= n:
        return list(indices)
    pos = np.linspace(0, len(indices) - 1, n).round().astype(int)
    return [indices[p] for p in dict.fromkeys(pos.tolist())]


# ------------------------------------------------------------------ token text
def _byte_decoder() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet (printable bytes map to themselves, the others to 256+i)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class TokenText:
    """Token id -> its text; byte pieces that are not valid UTF-8 alone are shown as `\\xNN`."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.cache: dict[int, str] = {}
        self.bytes = _byte_decoder()

    def __call__(self, i: int) -> str:
        i = int(i)
        if i not in self.cache:
            s = self.tok.decode([i])
            if "\ufffd" in s and hasattr(self.tok, "convert_ids_to_tokens"):
                piece = self.tok.convert_ids_to_tokens([i])[0]
                if all(c in self.bytes for c in piece):
                    s = bytes(self.bytes[c] for c in piece).decode("utf-8", errors="backslashreplace")
            self.cache[i] = s
        return self.cache[i]


# ------------------------------------------------------------------ evidence at one checkpoint
def top_contexts(acts_N: np.ndarray, ids_ST: np.ndarray, text: TokenText, n: int, before: int,
                 after: int) -> list[dict[str, Any]]:
    """The `n` highest activations (> 0), at most one per sequence, each with its token window."""
    S, T = ids_ST.shape
    order = np.argsort(-acts_N, kind="stable")
    seen: set[int] = set()
    out = []
    for r in order:
        if acts_N[r] <= 0 or len(out) >= n:
            break
        s, t = divmod(int(r), T)
        if s in seen:
            continue
        seen.add(s)
        lo, hi = max(0, t - before), min(T, t + after + 1)
        out.append({"seq": s, "pos": t, "target": t - lo, "max": float(acts_N[r]),
                    "tokens": [text(i) for i in ids_ST[s, lo:hi]],
                    "values": [round(float(v), 4) for v in acts_N[s * T + lo:s * T + hi]]})
    return out


def histogram(acts_N: np.ndarray, n_bins: int) -> dict[str, Any]:
    """Histogram of the non-zero activations (edges, counts) and the firing fraction."""
    nz = acts_N[acts_N > 0]
    frac = float(nz.size / max(acts_N.size, 1))
    if nz.size == 0:
        return {"edges": [], "counts": [], "firing_frac": frac, "n_tokens": int(acts_N.size)}
    counts, edges = np.histogram(nz, bins=n_bins)
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist(), "firing_frac": frac,
            "n_tokens": int(acts_N.size)}


def logit_effects(W_U_VD: torch.Tensor, d_D: torch.Tensor, text: TokenText, n: int) -> dict[str, Any]:
    """Output tokens the decoder direction promotes (largest W_U d) and suppresses (smallest)."""
    logits_V = W_U_VD @ d_D
    top = torch.topk(logits_V, min(n, logits_V.numel()))
    bot = torch.topk(-logits_V, min(n, logits_V.numel()))
    return {"promoted": [[text(i), round(float(v), 4)] for v, i in zip(top.values, top.indices)],
            "suppressed": [[text(i), round(-float(v), 4)] for v, i in zip(bot.values, bot.indices)]}


def _in_residual(site: str, d_in: int, d_model: int) -> bool:
    return d_in == d_model and "hook_z" not in site and "hook_q" not in site and "hook_k" not in site \
        and "hook_v" not in site


# ------------------------------------------------------------------ the unit
def feature_pages_data(run_dir: str | Path, cfg: FeaturePagesConfig | None = None,
                       out_dir: str | Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """Write feature-page JSON for the chosen lineages of a run (see module docstring); returns a summary."""
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import ActivationStore

    cfg = cfg or FeaturePagesConfig()
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else layout.features_dir(run_dir)
    lineages = read_table(layout.table_path(run_dir, "lineages"))
    feats = read_table(layout.table_path(run_dir, "features"))
    matches = read_table(layout.table_path(run_dir, "matches"))
    steps = sorted({int(r["step"]) for r in feats})
    if not steps:
        raise StoreError(f"{layout.table_path(run_dir, 'features')} has no rows: no feature pages to make")
    k_of = {s: k for k, s in enumerate(steps)}

    life: dict[int, dict[int, dict[str, Any]]] = {}
    for r in feats:
        if r.get("lineage_id") is not None:
            life.setdefault(int(r["lineage_id"]), {})[int(r["step"])] = r
    mean_firing = {lid: float(np.mean([r["firing_frac"] for r in rows.values()])) for lid, rows in life.items()}
    chosen = select_lineages(lineages, mean_firing, cfg.n_per_kind, cfg.lineages)
    by_id = {int(lin["lineage_id"]): lin for lin in lineages}

    # which (step, site) needs which features
    plan: dict[int, list[tuple[int, int]]] = {}  # lineage id -> [(step, feature)]
    needs: dict[tuple[int, str], set[int]] = {}
    for lid in chosen:
        lin = by_id[lid]
        k0 = k_of[int(lin["birth_step"])]
        alive = [(steps[k0 + j], int(f)) for j, f in enumerate(lin["features"]) if f is not None]
        plan[lid] = [alive[i] for i in spread(range(len(alive)), cfg.n_checkpoints)]
        for step, f in plan[lid]:
            needs.setdefault((step, lin["site"]), set()).add(f)

    store = ActivationStore(layout.activations_dir(run_dir))
    ids_ST = store.token_ids.cpu().numpy()
    series = load_series(layout.series_dir(run_dir), steps=sorted({s for s, _ in needs}) or None, device=device)
    text = TokenText(series.tokenizer)
    evidence: dict[tuple[int, str, int], dict[str, Any]] = {}
    for (step, site), fs in sorted(needs.items()):
        d = load_dictionary(layout.dictionary_dir(run_dir, step, site), device=device)
        acts_ND = store.load(step, site)
        cols = sorted(fs)
        codes_NL = torch.empty(acts_ND.shape[0], len(cols))
        with torch.no_grad():
            for i in range(0, acts_ND.shape[0], cfg.chunk_rows):
                codes_NL[i:i + cfg.chunk_rows] = d.encode(acts_ND[i:i + cfg.chunk_rows].to(device))[:, cols].cpu()
            W_U = series.model(step).get_output_embeddings().weight.detach().float().to(device)
        residual = _in_residual(site, d.cfg.d_in, W_U.shape[1])
        for j, f in enumerate(cols):
            a_N = codes_NL[:, j].numpy()
            ev = {"step": step, "feature": f, "histogram": histogram(a_N, cfg.n_bins),
                  "max_act": float(a_N.max()) if a_N.size else 0.0,
                  "contexts": top_contexts(a_N, ids_ST, text, cfg.n_contexts, cfg.before, cfg.after)}
            if residual:
                ev["logits"] = logit_effects(W_U, d.W_dec_FD[f].detach().float(), text, cfg.n_logits)
            else:
                ev["logits"] = None
                ev["logits_missing"] = (f"not measured: site {site} is not in the residual stream "
                                        f"(width {d.cfg.d_in}, d_model {W_U.shape[1]})")
            evidence[(step, site, f)] = ev

    out.mkdir(parents=True, exist_ok=True)
    trans: dict[int, list[dict[str, Any]]] = {}
    for m in matches:
        if m.get("lineage_id") is not None and int(m["lineage_id"]) in chosen:
            trans.setdefault(int(m["lineage_id"]), []).append(
                {k: m.get(k) for k in ("step_from", "step_to", "feature_from", "feature_to", "r", "cos", "class")})
    files = []
    for lid, reasons in sorted(chosen.items()):
        lin = by_id[lid]
        rows = life.get(lid, {})
        page = {"lineage": {k: v for k, v in lin.items()}, "reasons": reasons, "steps": steps,
                "life": [{"step": s, "alive": s in rows, "feature": rows[s]["feature"] if s in rows else None,
                          "firing_frac": rows[s]["firing_frac"] if s in rows else None,
                          "mean_act": rows[s]["mean_act"] if s in rows else None} for s in steps],
                "transitions": sorted(trans.get(lid, []), key=lambda t: (t["step_from"], t["feature_to"] or -1)),
                "snapshots": [evidence[(s, lin["site"], f)] for s, f in plan[lid]],
                "n_eval_tokens": int(ids_ST.size)}
        path = out / f"lineage_{lid:06d}.json"
        write_json(path, _clean(page))
        files.append(path)
    index = [_clean({**{k: lin.get(k) for k in BROWSER_COLUMNS}, "kinds": _kinds(lin),
                     "mean_firing": mean_firing.get(int(lin["lineage_id"])),
                     "page": int(lin["lineage_id"]) in chosen}) for lin in lineages]
    write_json(out / "index.json", {"steps": steps, "lineages": index})
    return {"n_lineages": len(lineages), "n_pages": len(chosen), "dir": str(out),
            "carriers": sorted(lid for lid, r in chosen.items() if "carrier" in r)}


BROWSER_COLUMNS = ("lineage_id", "site", "birth_step", "death_step", "last_step", "lifespan_steps", "n_checkpoints",
                   "origin", "fate", "is_carrier", "in_scaffold_final", "recruited_step")
