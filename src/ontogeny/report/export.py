"""Export one dictionary for Neuronpedia / SAEDashboard: its SAELens folder plus feature dashboards as JSON.

Why: users look at SAE features in the tools they already use. Neuronpedia's upload takes a SAELens
folder (`cfg.json` + `sae_weights.safetensors`) and the dashboard batches SAEDashboard's
`NeuronpediaRunner` writes: `batch-<i>.json` = {"model_id", "layer", "sae_set", "features": [...]}
where each feature holds `feature_index`, top activations (`activations`: [{"bin_min", "bin_max",
"bin_contains", "tokens", "values"}], the top-activations group written with bin_min = -1 as
SAEDashboard does), logit effects (`pos_str`/`pos_values`, `neg_str`/`neg_values`), `frac_nonzero`,
the activation histogram (`freq_hist_data_bar_values` = bin centres, `_heights` = counts), the logit
histogram, `n_prompts_total`, `n_tokens_in_prompt` and `dataset` (field names of SAEDashboard's
`neuronpedia_dashboard.NeuronpediaDashboardFeature.to_dict`). The evidence is computed on the study's
evaluation token set, two passes over its activations (top-k per feature, then windows and histograms),
so memory stays O(features × k) whatever the number of tokens.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ontogeny.store import layout
from ontogeny.store.run import atomic_path, write_json


def _layer(site: str) -> int:
    m = re.match(r"blocks\.(\d+)\.", site)
    return int(m.group(1)) if m else 0


def export_dictionary(run_dir: str | Path, step: int, site: str, out_dir: str | Path, model_id: str = "ontogeny",
                      sae_set: str | None = None, n_top: int = 20, before: int = 12, after: int = 4,
                      n_logits: int = 10, n_bins: int = 40, features_per_batch: int = 128,
                      chunk_rows: int = 2048, device: str = "cpu") -> dict[str, Any]:
    """Write `out_dir/` = SAELens folder + `neuronpedia/batch-<i>.json`; returns a summary (see module doc)."""
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.report.features import TokenText, _in_residual
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import ActivationStore

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    src = layout.dictionary_dir(run_dir, step, site)
    d = load_dictionary(src, device=device)
    store = ActivationStore(layout.activations_dir(run_dir))
    acts_ND = store.load(step, site)
    ids_ST = store.token_ids.cpu().numpy()
    S, T = ids_ST.shape
    N, F = acts_ND.shape[0], d.cfg.d_sae
    k = min(n_top, N)

    def codes(i: int) -> torch.Tensor:
        with torch.no_grad():
            return d.encode(acts_ND[i:i + chunk_rows].to(device)).float().cpu()

    # pass 1: top-k rows, max and firing count per feature
    top_v = torch.full((F, k), -float("inf"))
    top_i = torch.zeros((F, k), dtype=torch.long)
    fires = torch.zeros(F)
    for i in range(0, N, chunk_rows):
        c_BF = codes(i)
        fires += (c_BF > 0).sum(0)
        chunk = torch.topk(c_BF.T, min(k, c_BF.shape[0]), dim=1)
        v = torch.cat([top_v, chunk.values], 1)
        idx = torch.cat([top_i, chunk.indices + i], 1)
        best = torch.topk(v, k, dim=1)
        top_v, top_i = best.values, torch.gather(idx, 1, best.indices)
    fmax = top_v[:, 0].clamp(min=0)

    # pass 2: activation values on each top row's window, and histograms of non-zero activations
    win = []  # (feature, slot, row in window, global row)
    for f in range(F):
        for j in range(k):
            if top_v[f, j] <= 0:
                continue
            s, t = divmod(int(top_i[f, j]), T)
            for p in range(max(0, t - before), min(T, t + after + 1)):
                win.append((f, j, p - max(0, t - before), s * T + p))
    req = np.asarray(win, dtype=np.int64).reshape(-1, 4)
    req = req[np.argsort(req[:, 3], kind="stable")] if len(req) else req
    win_vals = np.zeros(len(req))
    hist = torch.zeros(F, n_bins)
    edges_hi = torch.where(fmax > 0, fmax, torch.ones_like(fmax))
    for i in range(0, N, chunk_rows):
        c_BF = codes(i)
        nz = c_BF > 0
        b = (c_BF / edges_hi * n_bins).long().clamp(max=n_bins - 1)
        hist.scatter_add_(1, b.T.contiguous(), nz.T.float().contiguous())
        lo_r, hi_r = np.searchsorted(req[:, 3], [i, i + c_BF.shape[0]]) if len(req) else (0, 0)
        if hi_r > lo_r:
            sel = req[lo_r:hi_r]
            win_vals[lo_r:hi_r] = c_BF[torch.from_numpy(sel[:, 3] - i), torch.from_numpy(sel[:, 0])].numpy()

    series = load_series(layout.series_dir(run_dir), steps=[step], device=device)
    text = TokenText(series.tokenizer)
    W_U = series.model(step).get_output_embeddings().weight.detach().float().cpu()
    residual = _in_residual(site, d.cfg.d_in, W_U.shape[1])
    W_dec = d.W_dec_FD.detach().float().cpu()
    windows: dict[tuple[int, int], dict[int, float]] = {}
    for (f, j, pos, _), v in zip(req.tolist(), win_vals.tolist()):
        windows.setdefault((f, j), {})[pos] = v

    feats = []
    for f in range(F):
        acts = []
        for j in range(k):
            if top_v[f, j] <= 0:
                continue
            s, t = divmod(int(top_i[f, j]), T)
            lo, hi = max(0, t - before), min(T, t + after + 1)
            vals = windows.get((f, j), {})
            acts.append({"bin_min": -1, "bin_max": round(float(fmax[f]), 3), "bin_contains": -1,
                         "tokens": [text(x) for x in ids_ST[s, lo:hi]],
                         "values": [round(vals.get(p, 0.0), 3) for p in range(hi - lo)]})
        width = float(edges_hi[f]) / n_bins
        centres = [round((b + 0.5) * width, 3) for b in range(n_bins)]
        entry: dict[str, Any] = {
            "feature_index": f, "activations": acts, "frac_nonzero": float(fires[f] / N),
            "freq_hist_data_bar_values": centres, "freq_hist_data_bar_heights": hist[f].tolist(),
            "n_prompts_total": int(S), "n_tokens_in_prompt": int(T),
            "dataset": f"ontogeny evaluation set ({S} × {T} tokens, hash {store.tokens_hash[:12]})",
            "pos_str": [], "pos_values": [], "neg_str": [], "neg_values": [],
            "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [],
            "neuron_alignment_indices": [], "neuron_alignment_values": [], "neuron_alignment_l1": [],
            "correlated_neurons_indices": [], "correlated_neurons_l1": [], "correlated_neurons_pearson": [],
            "correlated_features_indices": [], "correlated_features_l1": [], "correlated_features_pearson": [],
            "decoder_weights_dist": []}
        if residual:
            logits_V = W_U @ W_dec[f]
            top = torch.topk(logits_V, n_logits)
            bot = torch.topk(-logits_V, n_logits)
            entry.update(pos_str=[text(i) for i in top.indices], pos_values=[round(float(v), 3) for v in top.values],
                         neg_str=[text(i) for i in bot.indices], neg_values=[round(-float(v), 3) for v in bot.values])
            h, e = np.histogram(logits_V.numpy(), bins=n_bins)
            entry.update(logits_hist_data_bar_heights=h.tolist(),
                         logits_hist_data_bar_values=[round(float(x), 3) for x in (e[:-1] + e[1:]) / 2])
        feats.append(entry)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (layout.CFG_FILE, layout.WEIGHTS_FILE):
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(src / name, tmp)
    np_dir = out_dir / "neuronpedia"
    batches = []
    for b, i in enumerate(range(0, F, features_per_batch)):
        path = np_dir / f"batch-{b}.json"
        write_json(path, {"model_id": model_id, "layer": _layer(site),
                          "sae_set": sae_set or f"{site}-step{step}", "features": feats[i:i + features_per_batch]})
        batches.append(path)
    write_json(np_dir / "run_settings.json", {"step": step, "site": site, "model_id": model_id, "n_top": n_top,
                                               "before": before, "after": after, "n_bins": n_bins,
                                               "n_prompts_total": int(S), "n_tokens_in_prompt": int(T)})
    return {"dir": str(out_dir), "batches": [str(p) for p in batches], "n_features": F}
