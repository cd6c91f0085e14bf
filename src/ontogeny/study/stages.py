"""The units of work of a study, one function each: `fn(run_dir, cfg_json, arg) -> summary dict`.

Each unit reads what earlier units wrote under the run directory and writes its own artifacts
atomically; it knows nothing of the manifest, Ray or the CLI (STYLE.md §7). Configs travel as JSON so a
unit can run in another process.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from ontogeny.config import StudyConfig


def _cfg(cfg_json: dict) -> StudyConfig:
    return StudyConfig.model_validate(cfg_json)


def series_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """Train the embedded series (atomically, as one folder) or point at an existing one."""
    from ontogeny.series.load import load_series, write_pointer
    from ontogeny.series.train import train_series
    from ontogeny.store.run import atomic_path

    cfg = _cfg(cfg_json).series
    out = Path(run_dir) / "series"
    if cfg.source == "embedded":
        with atomic_path(out) as tmp:
            train_series(cfg.train, tmp)
    else:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            if Path(cfg.source).exists():
                write_pointer(tmp, str(Path(cfg.source).resolve()))
            else:
                write_pointer(tmp, cfg.source, cfg.revisions)
    series = load_series(out, steps=cfg.steps)
    summary = {"steps": series.steps, "n_layers": series.n_layers, "d_model": series.d_model}
    if cfg.source == "embedded":
        summary.update(training_figure(out, Path(run_dir) / "figures"))
    return summary


def training_figure(series_dir: Path, fig_dir: Path) -> dict[str, Any]:
    """Loss and induction curves of the embedded series' training log, and the induction jump's step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ontogeny.capabilities.detect import biggest_jump
    from ontogeny.report.figures import save_figure
    from ontogeny.series.train import read_losses

    rows = read_losses(series_dir)
    steps = [r["step"] for r in rows]
    x = [max(s, 1) for s in steps]  # log axis: step 0 drawn at 1
    curves = {"train loss": "train_loss", "eval loss": "eval_loss", "induction score (nats)": "induction"}
    pfig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "induction: loss(1st copy) - loss(2nd copy)"))
    mfig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, col in curves.items():
        panel = 2 if col == "induction" else 1
        pfig.add_trace(go.Scatter(x=x, y=[r[col] for r in rows], name=name, mode="lines+markers"), row=1, col=panel)
        axes[panel - 1].plot(x, [r[col] for r in rows], marker="o", ms=3, label=name)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    pfig.update_xaxes(type="log", title_text="step")
    pfig.update_layout(title="Training of the embedded series")
    save_figure(fig_dir, "series_training", pfig, mfig)
    jump = biggest_jump([r["induction"] for r in rows])
    return {"induction_jump_step": steps[jump] if jump is not None else None,
            "induction_final": rows[-1]["induction"]}


def study_token_ids(run_dir: str | Path, cfg: StudyConfig):
    """The shared token set of the study (held-out corpus text), identical for every unit."""
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import pack_tokens

    series = load_series(Path(run_dir) / "series", steps=cfg.series.steps, device=cfg.compute.device)
    a = cfg.activations
    corpus = study_corpus(cfg)
    return series, pack_tokens(series.tokenizer, [d.text for d in corpus.eval], a.n_seqs, a.ctx, a.seed)


def study_corpus(cfg: StudyConfig):
    """The embedded corpus the study's series was trained on (probes and held-out text come from it)."""
    return _corpus(cfg.series.train.seed, cfg.series.train.corpus.model_dump_json())


@functools.lru_cache(maxsize=2)
def _corpus(seed: int, config_json: str):
    """Building the corpus reads the standard library (seconds); units in one process share it."""
    from ontogeny.series.corpus import CorpusConfig, build_corpus

    return build_corpus(seed=seed, config=CorpusConfig.model_validate_json(config_json))


def copy_pool(cfg: StudyConfig, tokenizer):
    """For the embedded series, the synthetic alphabet's token ids (what its model learnt to copy); else None.

    Induction metrics on random tokens drawn from the whole vocabulary barely move for this small model,
    which copies the repeated spans' sub-vocabulary; drawing from it shows the capability the series has.
    """
    if cfg.series.source != "embedded":
        return None
    from ontogeny.series.tokenizer import alphabet_token_ids

    return alphabet_token_ids(tokenizer, study_corpus(cfg).alphabet)


def activations_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Capture every configured site at one checkpoint."""
    from ontogeny.store.activations import cache_activations

    cfg = _cfg(cfg_json)
    series, ids = study_token_ids(run_dir, cfg)
    a = cfg.activations
    store = cache_activations(series.subset([step]), ids, a.sites, Path(run_dir) / "activations",
                              batch_size=a.batch_size, dtype=a.dtype, config=a.model_dump(mode="json"))
    return {"step": step, "sites": len(a.sites), "rows": int(store.token_ids.numel())}


def dictionaries_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Train one dictionary per site at one checkpoint, all sites sharing one pass over the data."""
    from ontogeny.dictionaries.store_train import train_store_dictionaries
    from ontogeny.dictionaries.train import TrainConfig
    from ontogeny.store.activations import ActivationStore

    cfg = _cfg(cfg_json)
    d = cfg.dictionaries
    store = ActivationStore(Path(run_dir) / "activations")
    width = store.width(cfg.activations.sites[0])
    n_rows = store.token_ids.numel()
    dict_cfg = {"rule": d.rule, "d_sae": d.expansion * width, "k": d.k, "l1_coefficient": d.l1_coefficient,
                "l0_coefficient": d.l0_coefficient,
                "threshold_start_step": max(1, (n_rows // d.batch_size) * d.epochs // 4)}
    tcfg = TrainConfig(lr=d.lr, atm=d.atm, normalize="expected_average_only_in", seed=d.seed,
                       dead_tokens=max(1, n_rows * d.epochs // 2))
    rows = train_store_dictionaries(store, run_dir, dict_cfg, tcfg, steps=[step], sites=cfg.activations.sites,
                                    batch_size=d.batch_size, n_epochs=d.epochs, seed=d.seed, force=True)
    return {"step": step, "dictionaries": [{k: v for k, v in r.items() if k != "path"} for r in rows]}


def lifehistory_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """Matching, lineages, turnover, scaffold, joint ablation and prediction over all dictionaries."""
    from ontogeny.lifehistory.study import run_lifehistory

    cfg = _cfg(cfg_json)
    lh = cfg.lifehistory
    out = run_lifehistory(Path(run_dir), lh.config, cfg.activations.sites, None, lh.max_tokens, lh.ablate,
                          lh.ablation_seqs, force=True)
    return {k: v for k, v in out.items() if k not in ("files", "provenance")}


def crosscoder_steps(steps: list[int], chosen: list[int] | None) -> list[int]:
    """The crosscoder's checkpoints: those configured, or early / middle / last of the series."""
    if chosen:
        return list(chosen)
    if len(steps) < 3:
        return list(steps)
    picks = [steps[len(steps) // 4], steps[len(steps) // 2], steps[-1]]
    return sorted(set(picks))


def crosscoder_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """A crosscoder over a few checkpoints, with RelDec, IG indirect effects and RelIE."""
    from ontogeny.crosscoding.config import CrosscodeConfig
    from ontogeny.crosscoding.pipeline import run_crosscode
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import ActivationStore

    cfg = _cfg(cfg_json)
    c = cfg.crosscoder
    cc = CrosscodeConfig(steps=steps, site=c.site or cfg.activations.sites[-1], d_sae=c.d_sae, rule=c.rule,
                         l1_coefficient=c.l1_coefficient, n_steps=c.n_steps, batch_size=c.batch_size, lr=c.lr,
                         n_pairs=c.n_pairs, seed=c.seed)
    run = Path(run_dir)
    series = load_series(run / "series", steps=steps, device=cfg.compute.device)
    result = run_crosscode(run, cc, ActivationStore(run / "activations"), series)
    return {"steps": steps, **result.summary}


def llc_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """The whole-model LLC at one checkpoint (one row of the LLC curve)."""
    from ontogeny.slt.pipeline import llc_rows
    from ontogeny.store.activations import pack_tokens

    cfg = _cfg(cfg_json)
    from ontogeny.series.load import load_series

    series = load_series(Path(run_dir) / "series", steps=[step], device=cfg.compute.device)
    corpus = study_corpus(cfg)
    ids = pack_tokens(series.tokenizer, [d.text for d in corpus.eval], cfg.llc.n_seqs, cfg.llc.ctx, cfg.llc.sgld.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = llc_rows(series.model(step), ids, cfg.llc.sgld, ["full"], step)
    return {"step": step, "rows": rows}


def llc_merge_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """Collect the per-checkpoint LLC rows into tables/llc.parquet and the LLC-curve figure."""
    from ontogeny.slt.figures import llc_curve
    from ontogeny.slt.tables import write_table
    from ontogeny.study.manifest import Manifest

    cfg = _cfg(cfg_json)
    manifest = Manifest(run_dir)
    rows = [r for s in steps for r in manifest.entry(f"llc/step_{s:06d}")["result"]["rows"]]
    run = Path(run_dir)
    write_table(rows, run / "tables" / "llc.parquet", cfg.llc.model_dump(mode="json"))
    llc_curve(rows, run / "figures")
    return {"steps": steps, "llc": [r["llc_mean"] for r in rows]}


def susceptibility_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Per-head susceptibilities, the response matrix, its PCA and induction-head separation."""
    from ontogeny.series.load import load_series
    from ontogeny.slt.pipeline import susceptibility_run
    from ontogeny.slt.susceptibility import SusceptibilityConfig

    cfg = _cfg(cfg_json)
    s = cfg.susceptibility
    scfg = SusceptibilityConfig(sgld=s.sgld, centring=s.centring, ctx=s.ctx, n_base_seqs=s.n_probe_seqs,
                                n_probe_seqs=s.n_probe_seqs, base_kind=s.base_kind, probe_kinds=s.probe_kinds)
    series = load_series(Path(run_dir) / "series", steps=[step], device=cfg.compute.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = susceptibility_run(series.model(step), series.tokenizer, scfg, Path(run_dir), step,
                                 corpus=study_corpus(cfg), induction_pool=copy_pool(cfg, series.tokenizer))
    return out


def capabilities_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """Capability curves over the series and their change points (emergence steps)."""
    from ontogeny.emergence.pipeline import capabilities_run
    from ontogeny.series.load import load_series

    cfg = _cfg(cfg_json)
    series = load_series(Path(run_dir) / "series", steps=steps, device=cfg.compute.device)
    cap = cfg.capabilities.config
    pool = copy_pool(cfg, series.tokenizer)
    if pool is not None and cap.token_pool is None:
        cap = cap.model_copy(update={"token_pool": pool.tolist()})
    res = capabilities_run(series, Path(run_dir), cap)
    return {"events": res["events"]}


def emergence_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """A synthetic-task sweep (linear map / CA / induction): emergence times and claims."""
    from ontogeny.emergence.pipeline import analyze_sweep
    from ontogeny.emergence.sweep import SweepConfig, run_sweep

    cfg = _cfg(cfg_json)
    out = Path(run_dir) / "emergence"
    run_sweep(SweepConfig.model_validate(cfg.emergence.sweep), out)
    res = analyze_sweep(out)
    return {"claims": res["claims"]}


def report_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """The self-contained HTML report, built from the run's tables and figures alone."""
    from ontogeny.report.html import build_report

    path = build_report(Path(run_dir))
    return {"report": str(path)}
