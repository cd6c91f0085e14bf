"""The units of work of a study, one function each: `fn(run_dir, cfg_json, arg) -> summary dict`.

Each unit reads what earlier units wrote under the run directory and writes its own artifacts
atomically; it knows nothing of the manifest, Ray or the CLI (STYLE.md §7). Configs travel as JSON so a
unit can run in another process.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ontogeny.config import StudyConfig
from ontogeny.store import layout


def _cfg(cfg_json: dict) -> StudyConfig:
    return StudyConfig.model_validate(cfg_json)


def validate_study(cfg: StudyConfig) -> None:
    """Check what can be checked before a file is written; ConfigError / SiteError / SeriesError name it.

    Sites (and the crosscoder's site) against the architecture: the embedded series' config, or the
    source series' checkpoints (loading their configs also checks that they share one architecture and
    one tokenizer); the dictionary fields at the sites' width (e.g. k <= d_sae).
    """
    from ontogeny.series.capture import check_sites

    s = cfg.series
    if s.source == "embedded":
        n_layers, width = s.train.n_layers, s.train.d_model
    else:
        from ontogeny.series.load import load_series

        series = load_series(s.source, steps=s.steps, revisions=s.revisions)
        n_layers, width = series.n_layers, series.d_model
    check_sites(cfg.activations.sites, n_layers)
    if cfg.crosscoder.site is not None:
        check_sites([cfg.crosscoder.site], n_layers)
        if cfg.crosscoder.site not in cfg.activations.sites:
            from ontogeny.errors import ConfigError

            raise ConfigError(f"crosscoder.site {cfg.crosscoder.site!r} is not among activations.sites "
                              f"{cfg.activations.sites}")
    cfg.dictionaries.dictionary_fields(width)


def series_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """Train the embedded series (atomically, as one folder) or point at an existing one."""
    from ontogeny.series.load import load_series, write_pointer
    from ontogeny.series.train import train_series
    from ontogeny.store.run import atomic_path

    cfg = _cfg(cfg_json).series
    out = layout.series_dir(run_dir)
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
        summary.update(training_figure(out, layout.figures_dir(run_dir)))
    return summary


def training_figure(series_dir: Path, fig_dir: Path) -> dict[str, Any]:
    """Loss and induction curves of the embedded series' training log, and the induction jump's step."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ontogeny.capabilities.detect import biggest_jump
    from ontogeny.series.train import read_losses
    from ontogeny.store.figures import write_figure

    rows = read_losses(series_dir)
    steps = [r["step"] for r in rows]
    x = [max(s, 1) for s in steps]  # log axis: step 0 drawn at 1
    # whole-vocabulary spans at held-out periods (`induction_full`); the alphabet-span score is drawn beside it
    curves = {"train loss": "train_loss", "eval loss": "eval_loss",
              "induction, whole vocabulary (nats)": "induction_full", "induction, alphabet spans (nats)": "induction"}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "induction: loss(1st copy) - loss(2nd copy)"))
    for name, col in curves.items():
        panel = 2 if col.startswith("induction") else 1
        fig.add_trace(go.Scatter(x=x, y=[r[col] for r in rows], name=name, mode="lines+markers"), row=1, col=panel)
    fig.update_xaxes(type="log", title_text="step")
    fig.update_layout(title="Training of the embedded series")
    write_figure(fig_dir, "series_training", fig)
    jump = biggest_jump([r["induction_full"] for r in rows])
    return {"induction_jump_step": steps[jump] if jump is not None else None,
            "induction_final": rows[-1]["induction_full"]}


def study_series(run_dir: str | Path, cfg: StudyConfig, steps: list[int] | None = None):
    """The study's checkpoint series (all configured steps, or `steps`), on the configured device."""
    from ontogeny.series.load import load_series

    return load_series(layout.series_dir(run_dir), steps=steps or cfg.series.steps, device=cfg.compute.device)


def dictionary_steps(run_dir: str | Path, cfg: StudyConfig) -> list[int]:
    """The checkpoints that have dictionaries: every series step, or the `dictionaries.checkpoints` subset."""
    return cfg.dictionaries.pick_steps(study_series(run_dir, cfg).steps)


def study_corpus(run_dir: str | Path):
    """The corpus of the study's series (see `ontogeny.series.capture.series_corpus`)."""
    from ontogeny.series.capture import series_corpus

    return series_corpus(layout.series_dir(run_dir))


def study_token_ids(run_dir: str | Path, cfg: StudyConfig):
    """The study's series and its shared token set (`shared_token_ids`, as `ontogeny cache` builds it)."""
    from ontogeny.series.capture import shared_token_ids

    series = study_series(run_dir, cfg)
    return series, shared_token_ids(series.tokenizer, study_corpus(run_dir), cfg.activations)


def copy_pool(cfg: StudyConfig, tokenizer, corpus):
    """Token ids the embedded series' repeated spans were drawn from (probe pools for copying); else None.

    With `synthetic.pool = "vocab"` (the default) the series copies every ordinary token, so the pool is
    the whole vocabulary minus special tokens; with `"alphabet"` it is the synthetic alphabet's ids (a
    model trained on alphabet spans copies only that sub-vocabulary).
    """
    if cfg.series.source != "embedded":
        return None
    if cfg.series.train.synthetic.pool == "vocab":
        from ontogeny.series.tokenizer import ordinary_token_ids

        return ordinary_token_ids(tokenizer)
    from ontogeny.series.tokenizer import alphabet_token_ids

    return alphabet_token_ids(tokenizer, corpus.alphabet)


def activations_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Capture every configured site at one checkpoint."""
    from ontogeny.series.capture import cache_activations

    cfg = _cfg(cfg_json)
    series, ids = study_token_ids(run_dir, cfg)
    a = cfg.activations
    store = cache_activations(series.subset([step]), ids, a.sites, layout.activations_dir(run_dir),
                              batch_size=a.batch_size, dtype=a.dtype, config=a.model_dump(mode="json"),
                              skip_complete=False)
    return {"step": step, "sites": len(a.sites), "rows": int(store.token_ids.numel())}


def dictionaries_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Train one dictionary per site at one checkpoint, all sites sharing one pass over the data.

    Cached (default): on the evaluation store's activations. Streamed (`[dictionaries.stream]`): on corpus
    training windows run through the checkpoint, then measured on the held-out evaluation store.
    """
    from ontogeny.store.activations import ActivationStore

    cfg = _cfg(cfg_json)
    d = cfg.dictionaries
    store = ActivationStore(layout.activations_dir(run_dir))
    fields = d.dictionary_fields(store.width(cfg.activations.sites[0]))
    if d.stream is not None:
        return _streamed_dictionaries(run_dir, cfg, step, fields, store)
    from ontogeny.dictionaries.store_train import train_store_dictionaries

    rows = train_store_dictionaries(store, run_dir, fields, d.train, steps=[step], sites=cfg.activations.sites,
                                    batch_size=d.batch_size, n_epochs=d.epochs, seed=d.seed, force=True)
    return {"step": step, "dictionaries": [{k: v for k, v in r.items() if k != "path"} for r in rows]}


def _streamed_dictionaries(run_dir: str, cfg: StudyConfig, step: int, fields: dict, store) -> dict[str, Any]:
    from ontogeny.dictionaries.store_train import evaluate_dictionaries, stream_checkpoint_dictionaries
    from ontogeny.dictionaries.stream import TrainingWindows, corpus_train_stream

    s = cfg.dictionaries.stream
    series = study_series(run_dir, cfg, [step])
    model = series.model(step)
    corpus = study_corpus(run_dir)
    windows = TrainingWindows(corpus_train_stream(series.tokenizer, corpus), ctx=s.ctx or cfg.activations.ctx,
                              seed=s.seed)
    steps = dictionary_steps(run_dir, cfg)
    previous = steps[steps.index(step) - 1] if s.init == "warm" and steps.index(step) > 0 else None
    stream_checkpoint_dictionaries(run_dir, model, step, cfg.activations.sites, fields, cfg.dictionaries.train, s,
                                   windows, previous_step=previous, device=cfg.compute.device, force=True,
                                   source={"corpus_hash": corpus.hash, "split": "train", "ctx": windows.ctx})
    rows = evaluate_dictionaries(run_dir, model, store, step, cfg.activations.sites)
    return {"step": step, "dictionaries": rows}


def dictionaries_merge_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """tables/dictionaries.parquet and the figure `dictionaries_quality`: the held-out quality of every
    streamed dictionary (FVU, L0, dead fraction, CE recovered), and its range over the dictionaries."""
    from ontogeny.dictionaries.store_train import dictionaries_figure, quality_summary, write_dictionaries_table
    from ontogeny.study.manifest import Manifest

    cfg = _cfg(cfg_json)
    manifest = Manifest(run_dir)
    rows = [r for s in steps for r in manifest.entry(f"dictionaries/step_{s:06d}")["result"]["dictionaries"]]
    write_dictionaries_table(run_dir, rows, config=cfg.dictionaries.model_dump(mode="json"))
    dictionaries_figure(rows, layout.figures_dir(run_dir))
    return {"steps": steps, "dictionaries": len(rows), **quality_summary(rows)}


def lifehistory_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """Matching, lineages, turnover, scaffold, joint ablation and prediction over all dictionaries."""
    from ontogeny.lifehistory.study import run_lifehistory

    cfg = _cfg(cfg_json)
    lh = cfg.lifehistory
    lh_cfg = lh.config
    if lh_cfg.phase.warmup_steps is None and cfg.series.source == "embedded":  # the study knows the warm-up
        lh_cfg = lh_cfg.model_copy(update={"phase": lh_cfg.phase.model_copy(
            update={"warmup_steps": cfg.series.train.warmup})})
    dict_steps = dictionary_steps(run_dir, cfg)  # not stale ones of another subset
    out = run_lifehistory(Path(run_dir), lh_cfg, cfg.activations.sites, dict_steps, lh.max_tokens, lh.ablate,
                          lh.ablation_seqs)
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
    from ontogeny.crosscoding.pipeline import run_crosscode
    from ontogeny.store.activations import ActivationStore

    cfg = _cfg(cfg_json)
    c = cfg.crosscoder
    cc = c.crosscode_config(steps, c.site or cfg.activations.sites[-1])
    series = study_series(run_dir, cfg, steps)
    result = run_crosscode(Path(run_dir), cc, ActivationStore(layout.activations_dir(run_dir)), series)
    return {"steps": steps, **result.summary}


def llc_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """The whole-model LLC at one checkpoint (one row of the LLC curve)."""
    from ontogeny.series.capture import shared_token_ids
    from ontogeny.slt.pipeline import llc_rows

    cfg = _cfg(cfg_json)
    series = study_series(run_dir, cfg, [step])
    ids = shared_token_ids(series.tokenizer, study_corpus(run_dir), cfg.llc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = llc_rows(series.model(step), ids, cfg.llc.sgld, cfg.llc.components, step)
    return {"step": step, "rows": rows}


def llc_merge_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """Collect the per-checkpoint LLC rows into tables/llc.parquet and the LLC-curve figure."""
    from ontogeny.slt.figures import llc_curve
    from ontogeny.slt.tables import write_table
    from ontogeny.study.manifest import Manifest

    cfg = _cfg(cfg_json)
    manifest = Manifest(run_dir)
    rows = [r for s in steps for r in manifest.entry(f"llc/step_{s:06d}")["result"]["rows"]]
    write_table(rows, layout.table_path(run_dir, "llc"), cfg.llc.model_dump(mode="json"))
    llc_curve(rows, layout.figures_dir(run_dir))
    return {"steps": steps, "llc": [r["llc_mean"] for r in rows]}


def susceptibility_unit(run_dir: str, cfg_json: dict, step: int) -> dict[str, Any]:
    """Per-head susceptibilities, the response matrix, its PCA and induction-head separation."""
    from ontogeny.slt.pipeline import susceptibility_run

    cfg = _cfg(cfg_json)
    series = study_series(run_dir, cfg, [step])
    corpus = study_corpus(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = susceptibility_run(series.model(step), series.tokenizer, cfg.susceptibility.susceptibility_config(),
                                 Path(run_dir), step, census=cfg.census, corpus=corpus)
    return out


def census_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """Previous-token and induction heads at every checkpoint (tables heads, heads_copy; figure heads)."""
    from ontogeny.census.figures import write_census
    from ontogeny.census.heads import CensusConfig, census_series
    from ontogeny.store.run import provenance

    cfg = _cfg(cfg_json)
    census = CensusConfig.model_validate(cfg.census.model_dump(exclude={"enabled"}))
    heads, copies = census_series(study_series(run_dir, cfg, steps), census)
    write_census(heads, copies, layout.tables_dir(run_dir), layout.figures_dir(run_dir),
                 provenance(census.model_dump(mode="json")))
    return {"steps": steps, "rows": len(heads), **census_headline(heads, copies, census)}


def census_headline(heads: list[dict], copies: list[dict], census) -> dict[str, Any]:
    """At the last checkpoint: the best previous-token head of layer 0, the best induction head of the last
    layer, the heads passing the census thresholds, and the copy gain (first - second copy loss) per period."""
    from ontogeny.census.heads import best_head, copy_gain_formation, formation, named_heads

    last = max(r["step"] for r in heads)
    n_layers = 1 + max(r["layer"] for r in heads)
    prev = best_head(heads, "prev_token", step=last, layer=0)
    ind = best_head(heads, "induction", step=last, layer=n_layers - 1)
    gains = {str(r["period"]): r["copy_gain"] for r in copies if r["step"] == last and r["offset"] == 0}
    return {"census_step": last, "best_prev_token_head": prev["component"], "best_prev_token": prev["prev_token"],
            "best_induction_head": ind["component"], "best_induction": ind["induction"],
            "best_induction_ablation": ind["ablation_copy_increase"],
            "best_induction_shift_by_period": {k[len("best_shift_p"):]: v for k, v in ind.items()
                                           if k.startswith("best_shift_p")}, "named_heads": named_heads(heads, census, step=last),
            "copy_gain_by_period": gains, "prev_token_threshold": census.prev_token_threshold,
            "induction_threshold": census.induction_threshold,
            # when each circuit formed: change point of the best head's census curve over checkpoints
            "previous_token_forms": formation(heads, "prev_token", layer=0),
            "census_periods": list(census.periods), "census_offsets": list(census.offsets),
            "induction_forms": formation(heads, "induction", layer=n_layers - 1),
            "copy_gain_forms": copy_gain_formation(copies)}


def capabilities_unit(run_dir: str, cfg_json: dict, steps: list[int]) -> dict[str, Any]:
    """Capability curves over the series and their change points (emergence steps)."""
    from ontogeny.capabilities.pipeline import capabilities_run

    cfg = _cfg(cfg_json)
    series = study_series(run_dir, cfg, steps)
    cap = cfg.capabilities.config
    pool = copy_pool(cfg, series.tokenizer, study_corpus(run_dir))
    if pool is not None and cap.token_pool is None:
        cap = cap.model_copy(update={"token_pool": pool.tolist()})
    res = capabilities_run(series, Path(run_dir), cap)
    return {"events": res["events"]}


def emergence_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """A synthetic-task sweep (linear map / CA / induction): emergence times and claims."""
    from ontogeny.emergence.pipeline import analyze_sweep
    from ontogeny.emergence.sweep import run_sweep

    cfg = _cfg(cfg_json)
    out = layout.emergence_dir(run_dir)
    run_sweep(cfg.emergence.sweep, out)
    res = analyze_sweep(out)
    return {"claims": res["claims"]}


def features_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """Feature-page data of the chosen lineages (top activations, logits, firing over training)."""
    from ontogeny.report.features import FeaturePagesConfig, feature_pages_data

    cfg = _cfg(cfg_json)
    pages = FeaturePagesConfig.model_validate(cfg.features.model_dump(exclude={"enabled"}))
    return feature_pages_data(Path(run_dir), pages, out_dir=layout.features_dir(run_dir), device=cfg.compute.device)


def report_unit(run_dir: str, cfg_json: dict, _: Any = None) -> dict[str, Any]:
    """The self-contained HTML report, built from the run's tables and figures alone."""
    from ontogeny.report.html import build_report

    path = build_report(Path(run_dir), features=False)  # the `features` unit owns the feature-page data
    return {"report": str(path)}
