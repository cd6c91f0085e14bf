"""First-letter feature absorption, SAEBench-style (Chanin et al. 2024, arXiv 2409.14507; SAEBench's
absorption-fraction metric), on a tokenizer's vocabulary of alphabetic word tokens.

Pipeline (shared/research/seeds-susceptibility-atm.md §5):
 1. words: tokens made only of letters a-zA-Z (optionally one leading space), split train/test;
 2. prompt: `n_icl` in-context examples "{w} has the first letter: {L}" (newline-separated), then
    "{word} has the first letter:"; the activation is read at the word token, at `site`;
 3. ground-truth probe: one-vs-rest logistic regression per letter on the activations; a letter is
    evaluated when its test F1 > `min_probe_f1`;
 4. k-sparse probing on the dictionary's codes: latents ranked by an L1 logistic probe's weight; k grows
    while F1 improves by more than `f1_jump`; the latents at the last accepted k are the letter's *main*
    latents;
 5. per test word with the probe firing: P = a . p_hat, c_j = cos(p_hat, W_dec[j]), proj_j = f_j c_j,
    main = sum_{j in main} proj_j; absorbers: j not main, c_j >= `absorber_cos`, proj_j > 0, top
    `n_absorbers` summed as A. absorption fraction = 0 if main >= P or A/P < `absorb_ratio`; 1 if
    main <= 0; else min(A, P-main) / (min(A, P-main) + main). Full absorption: every main latent below
    1e-8, the top-projection latent (of the top 10) has c >= `full_cos`, P >= 0, proj_top/P >= `absorb_ratio`.
 6. score = mean over evaluated letters of (sum of fractions / number of probe true positives). Lower
    is better.
"""

from __future__ import annotations

import re
import string

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ontogeny.errors import ConfigError

_ALPHA = re.compile(r"^ ?[a-zA-Z]+$")


class AbsorptionConfig(BaseModel):
    """Parameters of the absorption metric (SAEBench defaults)."""

    model_config = ConfigDict(extra="forbid")

    n_icl: int = Field(10, ge=0, description="in-context examples per prompt")
    template: str = Field("{word} has the first letter:", description="prompt template")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of words held out")
    min_probe_f1: float = Field(0.6, ge=0, le=1, description="letters whose GT probe F1 is lower are skipped")
    min_letters: int = Field(20, ge=1, description="fewer evaluable letters than this raises")
    max_k: int = Field(10, ge=1, description="largest k in k-sparse probing")
    f1_jump: float = Field(0.03, ge=0, description="k grows while F1 improves by more than this")
    l1_C: float = Field(0.1, gt=0, description="inverse L1 strength of the latent-ranking probe")
    absorber_cos: float = Field(0.1, description="absorbers need cos(probe, W_dec[j]) >= this")
    full_cos: float = Field(0.025, description="full absorption: top latent's cosine >= this")
    absorb_ratio: float = Field(0.4, ge=0, description="A/P (or proj_top/P) needed to count absorption")
    n_absorbers: int = Field(3, ge=1, description="absorbers summed into A")
    batch_size: int = Field(32, ge=1)
    seed: int = Field(42)


def alpha_tokens(tokenizer) -> list[tuple[int, str]]:
    """(id, text) of vocabulary tokens that decode to letters only, with at most one leading space."""
    out = []
    for tok_id in range(len(tokenizer)):
        text = tokenizer.decode([tok_id])
        if _ALPHA.match(text):
            out.append((tok_id, text))
    return out


def first_letter(text: str) -> str:
    return text.strip()[0].upper()


def build_prompt(tokenizer, word_id: int, word: str, examples: list[tuple[int, str]], cfg: AbsorptionConfig,
                 ) -> tuple[list[int], int]:
    """Token ids of one prompt and the position of the word token in it."""
    head, _, tail = cfg.template.partition("{word}")
    ids: list[int] = []
    for ex_id, ex in examples:
        ids += tokenizer(head)["input_ids"] if head else []
        ids.append(ex_id)
        ids += tokenizer(f"{tail} {first_letter(ex)}\n")["input_ids"]
    ids += tokenizer(head)["input_ids"] if head else []
    pos = len(ids)
    ids.append(word_id)
    ids += tokenizer(tail)["input_ids"]
    return ids, pos


@torch.no_grad()
def word_activations(model: nn.Module, tokenizer, site: str, words: list[tuple[int, str]],
                     cfg: AbsorptionConfig) -> torch.Tensor:
    """Activation [n_words, D] at `site` on each word token inside its ICL prompt."""
    from ontogeny.series.sites import capture

    rng = np.random.default_rng(cfg.seed)
    prompts = []
    for i, (wid, w) in enumerate(words):
        pool = [j for j in rng.choice(len(words), size=min(len(words), cfg.n_icl + 1), replace=False) if j != i]
        prompts.append(build_prompt(tokenizer, wid, w, [words[j] for j in pool[:cfg.n_icl]], cfg))
    device = next(model.parameters()).device
    pad = tokenizer.eos_token_id or 0
    out = []
    for s in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[s:s + cfg.batch_size]
        T = max(len(p) for p, _ in chunk)
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)
        for r, (p, _) in enumerate(chunk):
            ids[r, :len(p)] = torch.tensor(p)  # right padding: causal attention never sees it
        act = capture(model, ids.to(device), [site])[site]
        act = act.reshape(act.shape[0], act.shape[1], -1)
        out.append(torch.stack([act[r, pos] for r, (_, pos) in enumerate(chunk)]).float().cpu())
    return torch.cat(out)


def absorption_fractions(acts_ND: torch.Tensor, codes_NF: torch.Tensor, W_dec_FD: torch.Tensor,
                         probe_D: torch.Tensor, main: list[int], cfg: AbsorptionConfig,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-word absorption fraction and full-absorption flag (formulas in the module docstring)."""
    p_hat = probe_D / probe_D.norm()
    cos_F = (W_dec_FD @ p_hat) / W_dec_FD.norm(dim=1).clamp_min(1e-12)
    P_N = acts_ND @ p_hat
    proj_NF = codes_NF * cos_F
    is_main = torch.zeros(W_dec_FD.shape[0], dtype=torch.bool)
    is_main[main] = True
    main_N = proj_NF[:, is_main].sum(1)
    cand = proj_NF.masked_fill(is_main | (cos_F < cfg.absorber_cos), 0).clamp_min(0)
    A_N = cand.topk(min(cfg.n_absorbers, cand.shape[1]), dim=1).values.sum(1)
    frac = torch.zeros_like(P_N)
    for n in range(P_N.shape[0]):
        P, m, A = float(P_N[n]), float(main_N[n]), float(A_N[n])
        if P <= 0 or m >= P or A / P < cfg.absorb_ratio:
            continue
        if m <= 0:
            frac[n] = 1.0
            continue
        a = min(A, P - m)
        frac[n] = min(1.0, max(0.0, a / (a + m)))
    top_vals, top_idx = proj_NF.topk(min(10, proj_NF.shape[1]), dim=1)
    main_off = (codes_NF[:, is_main].abs() < 1e-8).all(1)
    top_cos = cos_F[top_idx[:, 0]]
    ratio = top_vals[:, 0] / P_N.where(P_N.abs() > 1e-12, torch.full_like(P_N, 1e-12))
    full = main_off & (top_cos >= cfg.full_cos) & (P_N >= 0) & (ratio >= cfg.absorb_ratio)
    return frac, full


def _f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score
    return float(f1_score(y_true, y_pred, zero_division=0.0))


def absorption_from_activations(acts_ND: torch.Tensor, letters: list[str], dictionary: nn.Module,
                                cfg: AbsorptionConfig | None = None) -> dict[str, object]:
    """The absorption score of a dictionary given word activations and their first letters."""
    from sklearn.linear_model import LogisticRegression

    cfg = cfg or AbsorptionConfig()
    n = acts_ND.shape[0]
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    n_test = max(1, round(cfg.test_fraction * n))
    test, train = perm[:n_test], perm[n_test:]
    X = acts_ND.double().numpy()
    with torch.no_grad():
        codes = dictionary.encode(acts_ND.to(next(dictionary.parameters()).device)).float().cpu()
    Z = codes.numpy()
    lab = np.array(letters)
    W_dec = dictionary.W_dec_FD.detach().float().cpu()
    per_letter = {}
    for L in string.ascii_uppercase:
        y = (lab == L).astype(int)
        if y[train].sum() < 2 or y[test].sum() < 1 or y[train].sum() == len(train):
            continue
        gt = LogisticRegression(max_iter=1000, class_weight="balanced").fit(X[train], y[train])
        f1 = _f1(y[test], gt.predict(X[test]))
        if f1 <= cfg.min_probe_f1:
            continue
        ranker = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=cfg.l1_C,
                                    class_weight="balanced").fit(Z[train], y[train])
        order = np.argsort(-ranker.coef_[0])
        best_f1, main = -1.0, [int(order[0])]
        for k in range(1, cfg.max_k + 1):
            idx = order[:k]
            if Z[train][:, idx].std() == 0:
                f1k = 0.0
            else:
                clf = LogisticRegression(max_iter=500, class_weight="balanced").fit(Z[train][:, idx], y[train])
                f1k = _f1(y[test], clf.predict(Z[test][:, idx]))
            if f1k > best_f1 + cfg.f1_jump:
                best_f1, main = f1k, [int(i) for i in idx]
            else:
                break
        score = gt.decision_function(X[test])
        tp = test[(y[test] == 1) & (score > 0)]
        if len(tp) == 0:
            continue
        probe = torch.tensor(gt.coef_[0], dtype=torch.float32)
        frac, full = absorption_fractions(acts_ND[tp].float(), codes[tp], W_dec, probe, main, cfg)
        per_letter[L] = {"probe_f1": f1, "sparse_f1": best_f1, "n_true_positives": len(tp),
                         "absorption_fraction": float(frac.sum()) / len(tp),
                         "full_absorption_rate": float(full.float().sum()) / len(tp), "n_split": len(main)}
    if len(per_letter) < cfg.min_letters:
        raise ConfigError(f"only {len(per_letter)} letters pass the probe F1 gate (min_probe_f1="
                          f"{cfg.min_probe_f1}); min_letters={cfg.min_letters} are needed")
    vals = list(per_letter.values())
    return {"mean_absorption_fraction": float(np.mean([v["absorption_fraction"] for v in vals])),
            "mean_full_absorption": float(np.mean([v["full_absorption_rate"] for v in vals])),
            "mean_num_split_features": float(np.mean([v["n_split"] for v in vals])),
            "n_letters": len(vals), "per_letter": per_letter}


def absorption_score(model: nn.Module, tokenizer, site: str, dictionary: nn.Module,
                     cfg: AbsorptionConfig | None = None) -> dict[str, object]:
    """SAEBench-style first-letter absorption of `dictionary` at `site` of `model` (lower is better)."""
    cfg = cfg or AbsorptionConfig()
    words = alpha_tokens(tokenizer)
    if len(words) < 10:
        raise ConfigError(f"the tokenizer has only {len(words)} alphabetic tokens; absorption needs more")
    acts = word_activations(model, tokenizer, site, words, cfg)
    return absorption_from_activations(acts, [first_letter(w) for _, w in words], dictionary, cfg)
