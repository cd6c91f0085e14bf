"""One knob, one definition: the CLI, the study and the library agree on every default.

Three checks, each over every field rather than a hand-picked list:
1. each study section built from a package model has that model's default for every shared field;
2. each command, run with only its required arguments, builds exactly its model's default config
   (so no flag carries a second default), and every flag documented as an alias defaults to None;
3. `--set` parses TOML literals, reaches nested fields and names unknown keys.
"""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel
from typer.main import get_command
from typer.testing import CliRunner

from ontogeny import config as study_config
from ontogeny.capabilities.config import CapabilityConfig
from ontogeny.census.heads import CensusConfig
from ontogeny.cli import app
from ontogeny.commands import _common
from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.train import TrainConfig
from ontogeny.emergence.sweep import SweepConfig
from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.report.features import FeaturePagesConfig
from ontogeny.series.capture import CaptureConfig, TokenSetConfig
from ontogeny.series.train import SeriesConfig
from ontogeny.slt.sgld import SGLDConfig
from ontogeny.slt.susceptibility import SusceptibilityConfig

runner = CliRunner()


def _default(model: type[BaseModel], name: str):
    f = model.model_fields[name]
    return f.get_default(call_default_factory=True)


def _dump(v):
    return v.model_dump(mode="json") if isinstance(v, BaseModel) else v


# (section, package model, fields of the package model the section leaves out)
SHARED = [
    (study_config.ActivationsSection, CaptureConfig, set()),
    (study_config.DictionariesSection, DictionaryConfig, {"d_in", "d_sae"}),
    (study_config.CrosscoderSection, CrosscodeConfig, {"steps", "site"}),
    (study_config.LLCSection, TokenSetConfig, set()),
    (study_config.SusceptibilitySection, SusceptibilityConfig, set()),
    (study_config.FeaturesSection, FeaturePagesConfig, set()),
    (study_config.CensusSection, CensusConfig, set()),
]
# (section, field, package model whose default instance that field must hold)
NESTED = [
    (study_config.SeriesSection, "train", SeriesConfig),
    (study_config.DictionariesSection, "train", TrainConfig),
    (study_config.LifeHistorySection, "config", LifeHistoryConfig),
    (study_config.LLCSection, "sgld", SGLDConfig),
    (study_config.CapabilitiesSection, "config", CapabilityConfig),
    (study_config.EmergenceSection, "sweep", SweepConfig),
]


@pytest.mark.parametrize(("section", "model", "left_out"), SHARED, ids=lambda x: getattr(x, "__name__", ""))
def test_study_sections_take_every_package_default(section, model, left_out):
    shared = set(model.model_fields) - left_out
    assert shared <= set(section.model_fields), shared - set(section.model_fields)
    for name in shared:
        assert _dump(_default(section, name)) == _dump(_default(model, name)), f"{section.__name__}.{name}"
        assert section.model_fields[name].description == model.model_fields[name].description, name


@pytest.mark.parametrize(("section", "field", "model"), NESTED, ids=lambda x: getattr(x, "__name__", str(x)))
def test_nested_sections_hold_the_package_default(section, field, model):
    assert _dump(_default(section, field)) == model().model_dump(mode="json")


def test_lifehistory_run_knobs_agree_with_the_library_function():
    from ontogeny.lifehistory.study import run_lifehistory

    params = inspect.signature(run_lifehistory).parameters
    for name in ("max_tokens", "ablate", "ablation_seqs"):
        assert params[name].default == _default(study_config.LifeHistorySection, name), name


class _Built(Exception):
    """Raised by the patched build_config to stop a command once its config is built."""


def _capture_config(monkeypatch, modules):
    seen = []
    real = _common.build_config

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        raise _Built

    for m in modules:
        monkeypatch.setattr(m, "build_config", spy)
    return seen


COMMANDS = [  # (argv with only what is required, model the command reads, fields set by the argv)
    (["cache", "SERIES", "--out", "OUT"], CaptureConfig, {}),
    (["dict", "train", "STORE"], study_config.DictionariesSection, {}),
    (["crosscode", "RUN", "--steps", "0,1"], CrosscodeConfig, {"steps": [0, 1]}),
    (["llc", "SERIES", "--out", "OUT"], study_config.LLCSection, {}),
    (["susceptibility", "SERIES", "--out", "OUT"], study_config.SusceptibilitySection, {}),
    (["lifehistory"], LifeHistoryConfig, {}),
    (["emergence", "sweep", "OUT"], SweepConfig, {}),
    (["emergence", "capabilities", "SERIES", "--out", "OUT"], CapabilityConfig, {}),
    (["series", "train", "--out", "OUT"], SeriesConfig, {}),
]


@pytest.mark.parametrize(("argv", "model", "given"), COMMANDS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_each_command_builds_its_models_default(monkeypatch, tmp_path, argv, model, given):
    import importlib

    mods = [importlib.import_module(f"ontogeny.commands.{n}")
            for n in ("cache", "dictionaries", "crosscode", "slt", "lifehistory", "emergence")]
    seen = _capture_config(monkeypatch, [*mods, _common])  # series.py imports build_config from _common
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    res = runner.invoke(app, argv)
    assert isinstance(res.exception, _Built), res.output
    assert seen[-1].model_dump(mode="json") == model(**given).model_dump(mode="json")


def test_study_command_default_is_the_study_default(monkeypatch, tmp_path):
    import ontogeny.commands.study as study_cmd

    seen = _capture_config(monkeypatch, [study_cmd])
    (tmp_path / "empty.toml").write_text("")
    res = runner.invoke(app, ["study", str(tmp_path / "empty.toml"), "--run-dir", str(tmp_path / "run")])
    assert isinstance(res.exception, _Built), res.output
    assert seen[-1] == study_config.StudyConfig()


def _walk(group):
    for name, cmd in getattr(group, "commands", {}).items():
        yield from _walk(cmd) if hasattr(cmd, "commands") else [(name, cmd)]


def test_every_alias_flag_defaults_to_none():
    n_alias = 0
    for name, cmd in _walk(get_command(app)):
        for p in cmd.params:
            if "alias of" in (p.help or ""):
                n_alias += 1
                assert p.default is None, f"{name} --{p.name} defaults to {p.default!r}"
    assert n_alias > 40  # the flags of cache, dict train, crosscode, llc, susceptibility, lifehistory, ...


def test_set_parses_toml_literals_and_nested_keys():
    cfg = _common.build_config(study_config.LLCSection, None,
                               ["sgld.num_draws=7", "components=['full', 'l0h1']", "sgld.lr = 2e-3", "every=3"])
    assert (cfg.sgld.num_draws, cfg.components, cfg.sgld.lr, cfg.every) == (7, ["full", "l0h1"], 2e-3, 3)
    cfg = _common.build_config(study_config.StudyConfig, None, ["dictionaries.rule=jumprelu", "name=x y"])
    assert (cfg.dictionaries.rule, cfg.name) == ("jumprelu", "x y")  # bare words are strings


def test_set_beats_flags_and_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("n_seqs = 5\nctx = 9\n")
    cfg = _common.build_config(CaptureConfig, p, ["ctx=11"], {"n_seqs": 6, "ctx": 10})
    assert (cfg.n_seqs, cfg.ctx) == (6, 11)


def test_unknown_and_bad_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"sgld\.num_drawz: unknown key"):
        _common.build_config(study_config.LLCSection, None, ["sgld.num_drawz=3"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        _common.build_config(study_config.LLCSection, None, ["sgld.num_draws"])
    with pytest.raises(ConfigError, match=r"every is a value, not a table"):
        _common.build_config(study_config.LLCSection, None, ["every.x=1"], {"every": 3})
    res = runner.invoke(app, ["llc", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "sgld.bogus=1"])
    assert res.exit_code == 2 and "sgld.bogus: unknown key" in " ".join(res.output.split())


def test_demo_keeps_the_values_it_had_before_one_default_per_knob():
    """The demo's dictionaries, crosscoder and LLC token set, now given explicitly (see docs/study.md)."""
    from ontogeny.study.demo import demo_config

    c = demo_config()
    d = c.dictionaries
    # issue 12: the demo's dictionaries are streamed (1M tokens each, 12 log-spaced checkpoints; sweep defaults)
    assert (d.k, d.expansion, d.checkpoints) == (16, 4, 12)
    assert (d.stream.training_tokens, d.stream.batch_size, d.train.lr, d.train.lr_warmup_steps,
            d.train.dead_tokens) == (1_048_576, 4096, 3e-3, 0, 1_048_576 // 4)
    x = c.crosscoder
    assert (x.d_sae, x.n_steps, x.batch_size, x.n_pairs, x.rule, x.lr) == (256, 600, 512, 32, "relu", 1e-3)
    # issue 15: 4 chains × 40 draws after 20 burn-in steps, checked against 4 × 400 draws (docs/slt.md)
    assert (c.llc.n_seqs, c.llc.ctx, c.llc.seed, c.llc.sgld.num_draws) == (128, 64, 0, 40)
    assert (c.llc.sgld.num_chains, c.llc.sgld.num_burnin_steps) == (4, 20)
