"""Plan and run a study: stages of units, skipping those complete under the current key.

series -> activations (per checkpoint) -> dictionaries (per checkpoint) -> analyses (life history,
crosscoder, LLC per checkpoint, susceptibilities, capability curves, emergence sweep) -> report.
Units of one stage run through `ontogeny.compute.map_units` (in process or on Ray) and each is
recorded in the manifest as it finishes, with the files it wrote, so a study killed at any point
resumes without recomputing finished units, and a finished unit whose files were changed or deleted
behind its back is recomputed with its dependents. Before anything is written the whole config is
checked (sites against the architecture, the series' checkpoints); one process holds the run directory
(`store.lock.RunLock`); study.json says running, complete, failed or interrupted (with error and unit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ontogeny import progress
from ontogeny.compute import map_units
from ontogeny.config import StudyConfig
from ontogeny.errors import StoreError
from ontogeny.study import stages
from ontogeny.study.manifest import Manifest, new_artifacts, snapshot, unit_key
from ontogeny.store import faults, layout
from ontogeny.store.lock import RunLock
from ontogeny.store.run import provenance, remove_stale_temporaries, write_json

Event = Callable[[str, str, dict[str, Any]], None]  # (kind: "start"|"skip"|"stale"|"done", unit name, info)


@dataclass
class Unit:
    """One unit of work: a stage function applied to one argument, with the config part it depends on."""

    name: str
    fn: Callable[[str, dict, Any], dict[str, Any]]
    arg: Any
    config: Any
    deps: list[str] = field(default_factory=list)
    key: str = ""


def _call(job: tuple) -> tuple[dict[str, Any], float, dict[str, dict[str, Any]]]:
    """Run one unit where it runs (this process or a Ray worker); also return the files it wrote.

    The files are found by comparing the run directory before and after (exact in process; with Ray,
    units of one stage running at once may also list each other's files, which only errs towards
    recomputing more)."""
    name, fn, run_dir, cfg_json, arg = job
    progress.current().unit_start(name)  # in process: the CLI's reporter; on a Ray worker: the no-op one
    before = snapshot(run_dir)
    t0 = time.perf_counter()
    faults.enter_unit(name)  # test-only kill points (store/faults.py); inert unless its variable is set
    result = fn(run_dir, cfg_json, arg)
    faults.leave_unit(name)
    seconds = time.perf_counter() - t0
    return result, seconds, new_artifacts(run_dir, before)


class Study:
    """A study in a run directory (see DESIGN.md for the layout)."""

    def __init__(self, cfg: StudyConfig, run_dir: str | Path, on_event: Event | None = None,
                 verify: bool = False):
        self.cfg = cfg
        self.verify = verify
        self.run_dir = Path(run_dir)
        self.cfg_json = cfg.model_dump(mode="json")
        self.manifest = Manifest(self.run_dir)
        self.on_event = on_event or (lambda kind, name, info: None)
        self.keys: dict[str, str] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.stale: dict[str, list[str]] = {}  # unit -> what was wrong with its artifacts
        self.current: list[str] = []  # units of the stage being executed, not yet finished

    # -- planning ------------------------------------------------------------------------------
    def _section(self, name: str) -> Any:
        return self.cfg_json[name]

    def _finalise(self, units: list[Unit]) -> list[Unit]:
        for u in units:
            u.key = unit_key(u.config, [self.keys[d] for d in u.deps])
            self.keys[u.name] = u.key
        return units

    def plan_series(self) -> list[Unit]:
        return self._finalise([Unit("series", stages.series_unit, None, self._section("series"))])

    def steps(self) -> list[int]:
        return list(self.manifest.entry("series")["result"]["steps"])

    def plan_activations(self, steps: Sequence[int]) -> list[Unit]:
        self.write_store_index(steps)
        return self._finalise([Unit(f"activations/step_{s:06d}", stages.activations_unit, s,
                                    self._section("activations"), ["series"]) for s in steps])

    def write_store_index(self, steps: Sequence[int]) -> None:
        """activations/store.json: exactly the configured tokens, sites and steps, and the whole series.

        Written before the activations stage (its units read it) and again after it: each unit merges its
        own step into the index and stamps that one checkpoint as the input, so without the second write
        the index would depend on which units the last run happened to execute (a resumed study would
        differ from an uninterrupted one).
        """
        from ontogeny.store.activations import write_store_meta

        series, ids = stages.study_token_ids(self.run_dir, self.cfg)
        a = self.cfg.activations
        widths = {s: series.d_model for s in a.sites}
        inputs = {"series": ",".join(c.describe() for c in series.checkpoints)}
        write_store_meta(layout.activations_dir(self.run_dir), ids, a.sites, widths, steps, a.model_dump(mode="json"),
                         inputs, merge=False)

    def plan_dictionaries(self, steps: Sequence[int]) -> list[Unit]:
        stream = self.cfg.dictionaries.stream
        warm = stream is not None and stream.init == "warm"  # a warm start reads the previous step's dictionaries
        units = [Unit(f"dictionaries/step_{s:06d}", stages.dictionaries_unit, s, self._section("dictionaries"),
                      [f"activations/step_{s:06d}", *([f"dictionaries/step_{steps[i - 1]:06d}"] if warm and i else [])])
                 for i, s in enumerate(steps)]
        return self._finalise(units)

    def plan_dictionaries_table(self, steps: Sequence[int]) -> list[Unit]:
        """Streamed dictionaries: one table of their held-out quality (tables/dictionaries.parquet)."""
        if self.cfg.dictionaries.stream is None:
            return []
        return self._finalise([Unit("dictionaries", stages.dictionaries_merge_unit, list(steps),
                                    self._section("dictionaries"), [f"dictionaries/step_{s:06d}" for s in steps])])

    def plan_analyses(self, steps: Sequence[int]) -> list[Unit]:
        c = self.cfg
        dicts = [f"dictionaries/step_{s:06d}" for s in c.dictionaries.pick_steps(list(steps))]
        units: list[Unit] = []
        if c.lifehistory.enabled:
            units.append(Unit("lifehistory", stages.lifehistory_unit, None, self._section("lifehistory"), dicts))
        if c.crosscoder.enabled and len(steps) >= 2:
            cc_steps = stages.crosscoder_steps(list(steps), c.crosscoder.steps)
            units.append(Unit("crosscoder", stages.crosscoder_unit, cc_steps, self._section("crosscoder"),
                              [f"activations/step_{s:06d}" for s in cc_steps]))
        if c.llc.enabled:
            units += [Unit(f"llc/step_{s:06d}", stages.llc_unit, s, self._section("llc"), ["series"])
                      for s in c.llc.pick_steps(list(steps))]
        if c.susceptibility.enabled:
            step = c.susceptibility.step if c.susceptibility.step is not None else steps[-1]
            units.append(Unit("susceptibility", stages.susceptibility_unit, step, self._section("susceptibility"),
                              ["series"]))
        if c.capabilities.enabled:
            units.append(Unit("capabilities", stages.capabilities_unit, list(steps), self._section("capabilities"),
                              ["series"]))
        if c.census.enabled:
            units.append(Unit("census", stages.census_unit, list(steps), self._section("census"), ["series"]))
        if c.emergence.enabled:
            units.append(Unit("emergence", stages.emergence_unit, None, self._section("emergence")))
        return self._finalise(units)

    def plan_merge(self, steps: Sequence[int]) -> list[Unit]:
        if not self.cfg.llc.enabled:
            return []
        llc_steps = self.cfg.llc.pick_steps(list(steps))
        return self._finalise([Unit("llc", stages.llc_merge_unit, llc_steps, self._section("llc"),
                                    [f"llc/step_{s:06d}" for s in llc_steps])])

    def plan_features(self, steps: Sequence[int]) -> list[Unit]:
        if not (self.cfg.features.enabled and self.cfg.lifehistory.enabled):
            return []
        deps = ["lifehistory", *(f"dictionaries/step_{s:06d}" for s in self.cfg.dictionaries.pick_steps(list(steps))),
                *(f"activations/step_{s:06d}" for s in steps)]
        return self._finalise([Unit("features", stages.features_unit, None, self._section("features"), deps)])

    # -- running -------------------------------------------------------------------------------
    def execute(self, units: list[Unit]) -> None:
        todo = []
        for u in units:
            if not self.manifest.is_done(u.name, u.key) or any(d in self.ran for d in u.deps):
                todo.append(u)
                continue
            problems = self.manifest.problems(u.name, full=self.verify)
            if problems:
                self.stale[u.name] = problems
                self.on_event("stale", u.name, {"problems": problems})
                todo.append(u)
            else:
                self.skipped.append(u.name)
                progress.current().skip(u.name)
                self.on_event("skip", u.name, {})
        if not todo:
            return
        self.current = [u.name for u in todo]
        for u in todo:
            self.on_event("start", u.name, {})

        def done(i: int, out: tuple[dict[str, Any], float, dict[str, Any]]) -> None:
            u = todo[i]
            self.manifest.record(u.name, u.key, u.config, out[0], out[1], out[2])
            self.ran.append(u.name)
            self.current.remove(u.name)
            figures = {k: v for k, v in out[0].items() if isinstance(v, int | float) and not isinstance(v, bool)}
            progress.current().unit_end(u.name, dict(list(figures.items())[:4]), seconds=out[1])
            self.on_event("done", u.name, {"seconds": out[1]})

        try:
            map_units(_call, [(u.name, u.fn, str(self.run_dir), self.cfg_json, u.arg) for u in todo],
                      backend=self.cfg.compute.backend, address=self.cfg.compute.address, on_done=done)
        except BaseException as e:
            for name in self.current[:1]:  # in process: the unit that raised
                progress.current().unit_end(name, error=f"{type(e).__name__}: {e}")
            raise

    def run(self) -> dict[str, Any]:
        """Run every stage that is not complete; returns what ran, what was skipped and what was stale."""
        stages.validate_study(self.cfg)  # before anything is written
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise StoreError(f"cannot create the run directory {self.run_dir}: permission denied") from None
        with RunLock(self.run_dir):
            remove_stale_temporaries(self.run_dir)
            self._write_record("running")
            try:
                out = self._run_stages()
            except BaseException as e:
                status = "interrupted" if isinstance(e, KeyboardInterrupt | SystemExit) else "failed"
                try:  # best effort: a full disk must not hide the error that stopped the study
                    self._write_record(status, {"error": f"{type(e).__name__}: {e}", "units": list(self.current)})
                except (OSError, StoreError):
                    pass
                raise
            self._write_record("complete")
        progress.current().summary()
        return out

    def _run_stages(self) -> dict[str, Any]:
        self.execute(self.plan_series())
        steps = self.steps()
        self.execute(self.plan_activations(steps))
        self.write_store_index(steps)
        dict_steps = self.cfg.dictionaries.pick_steps(steps)  # all, or a log-spaced subset
        dicts = self.plan_dictionaries(dict_steps)
        stream = self.cfg.dictionaries.stream
        for group in ([[u] for u in dicts] if stream is not None and stream.init == "warm" else [dicts]):
            self.execute(group)  # a warm start chains the checkpoints: one at a time
        self.execute(self.plan_dictionaries_table(dict_steps))
        analyses = self.plan_analyses(steps)
        self.execute(analyses)
        merge = self.plan_merge(steps)
        self.execute(merge)
        pages = self.plan_features(steps)
        self.execute(pages)
        report = self._finalise([Unit("report", stages.report_unit, None, {"report": 1},
                                      [u.name for u in analyses + merge + pages])])
        self.execute(report)
        return {"ran": self.ran, "skipped": self.skipped, "stale": self.stale, "steps": steps,
                "report": str(layout.report_page(self.run_dir))}

    def _write_record(self, status: str, failure: dict[str, Any] | None = None) -> None:
        units = {e["unit"]: e["key"] for e in self.manifest.all()}
        record = {"status": status, "units": units, **provenance(self.cfg_json)}
        if failure:
            record["failure"] = failure
        write_json(layout.study_record(self.run_dir), record)


def run_study(cfg: StudyConfig, run_dir: str | Path, on_event: Event | None = None,
              verify: bool = False) -> dict[str, Any]:
    """Run (or resume) a study; see `Study`. `verify`: hash every recorded artifact (else size + mtime)."""
    return Study(cfg, run_dir, on_event, verify).run()
