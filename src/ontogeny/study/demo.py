"""The embedded default study: what `ontogeny demo` (and `make demo`) runs."""

from __future__ import annotations

from ontogeny.config import StudyConfig


def demo_config() -> StudyConfig:
    """The default study on the embedded series, sized to finish in about 10 minutes on 2 CPU cores."""
    return StudyConfig.model_validate({
        "name": "demo",
        "activations": {"sites": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], "n_seqs": 128, "ctx": 64},
        # Streamed (docs/streaming.md): 1,048,576 corpus-train tokens per dictionary, at a log-spaced subset of
        # 12 checkpoints (every one of the 24 would double the stage). lr 3e-3, batch 4096, no warm-up: the
        # sweep of benchmarks/stream_sweep.py (3e-3 beat 1e-3 in every cell; warm-up changed nothing). Dead
        # after a quarter of the budget without firing.
        "dictionaries": {"rule": "topk", "expansion": 4, "k": 16, "checkpoints": 12,
                         "train": {"lr": 3e-3, "dead_tokens": 262_144},
                         "stream": {"training_tokens": 1_048_576, "batch_size": 4096}},
        # Default scaffold (no override). The early window is the 150 steps after the series' 50-step warm-up,
        # (50, 200]: before the induction circuit forms (steps 300-350); the paper's "first 1%" would be 6 steps
        # here, which holds no checkpoint transition after warm-up.
        "lifehistory": {"config": {"phase": {"early_steps": 150}, "match": {"n_null": 5},
                                   "ablation": {"n_single": 20}}},
        # A small crosscoder (the library default is d_sae 512, 2000 steps of 1024 tokens, 64 pairs per task).
        "crosscoder": {"d_sae": 256, "n_steps": 600, "batch_size": 512, "n_pairs": 32},
        # SGLD dominates the demo's cost (each draw is a forward+backward per chain): a light setting, checked
        # against 4 chains × 400 draws at steps 64, 250, 600 (docs/slt.md, "Demo check against a long run":
        # within 1.7% at the demo's seed, 2.9% over three; the old 2 × 30 without burn-in steps missed by 5.9% at
        # step 250). 4 chains
        # cost ≈ 1.5× 2 chains per step (vmapped), so they buy more than longer chains. nβ 30 (Baker et al.),
        # a documented choice: at the library's n/ln n ≈ 896 no ε from 3e-6 to 1e-4 passed the calibration at
        # step 600 (chains unsettled after 200 draws or MALA < 0.9; same docs section); ε 1e-3, γ 300 as the paper.
        "llc": {"every": 4, "n_seqs": 128, "ctx": 64,
                "sgld": {"num_draws": 40, "num_chains": 4, "num_burnin_steps": 20, "batch_size": 8, "lr": 1e-3,
                         "n_beta": 30.0, "gamma": 300.0}},
        # The head census at every checkpoint (previous-token / induction heads on whole-vocabulary spans at
        # held-out periods 11, 20, 32; zero-ablation at 4 checkpoints): ~17 s on the default series.
        "census": {"enabled": True},
        # The LLC's sampler settings (ε, nβ, γ, batch, burn-in steps); 2 chains × 30 draws per component keep
        # the 9-run sweep (full + 8 heads, per-token observables at every draw) near its old cost.
        "susceptibility": {"sgld": {"num_draws": 30, "num_chains": 2, "num_burnin_steps": 20, "batch_size": 8,
                                    "lr": 1e-3, "n_beta": 30.0, "gamma": 300.0}},
    })


def tiny_config() -> StudyConfig:
    """A study that runs in well under a minute: tiny series, few units (tests and CI)."""
    from ontogeny.series.train import SeriesConfig

    return StudyConfig.model_validate({
        "name": "tiny",
        "series": {"train": SeriesConfig.tiny().model_dump(mode="json")},
        "activations": {"sites": ["blocks.0.hook_resid_post"], "n_seqs": 16, "ctx": 32, "batch_size": 8},
        "dictionaries": {"expansion": 2, "k": 4, "batch_size": 64, "epochs": 2, "threshold_start_step": 4,
                         "train": {"normalize": "expected_average_only_in", "dead_tokens": 512}},
        "lifehistory": {"max_tokens": 512, "ablation_seqs": 4,
                        "config": {"ablation": {"n_controls": 5, "n_single": 3}, "match": {"n_null": 2},
                                   "phase": {"early_frac": 0.1}, "scaffold": {"min_reach": 0}}},
        "crosscoder": {"d_sae": 32, "n_steps": 20, "batch_size": 64, "n_pairs": 4},
        "llc": {"steps": [0, 40], "n_seqs": 16, "ctx": 32,
                "sgld": {"num_draws": 5, "num_chains": 2, "batch_size": 4, "lr": 1e-3, "n_beta": 30.0}},
        "susceptibility": {"sgld": {"num_draws": 4, "num_chains": 2, "batch_size": 4, "lr": 1e-3, "n_beta": 30.0},
                           "n_probe_seqs": 2, "n_base_seqs": 2, "ctx": 32, "probe_kinds": ["prose", "synthetic"]},
        "capabilities": {"config": {"n_prompts": 4, "rep_len": 6}},
        # The head census as the demo runs it, small: periods the tiny series never trained on (its synthetic
        # spans are 2-6, its long period 10) that fit its context of 32 with both offsets (5 + 2*12 = 29).
        "census": {"enabled": True, "periods": [7, 12], "offsets": [0, 5], "n_seqs": 4,
                   "ablate_checkpoints": 2},
    })
