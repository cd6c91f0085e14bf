import pytest

from ontogeny.config import load_config, parse_config
from ontogeny.errors import ConfigError


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"dictionaries\.rulez: unknown key"):
        parse_config({"dictionaries": {"rulez": "topk"}})
    with pytest.raises(ConfigError, match=r"lifehistory\.config\.scaffold\.bogus: unknown key"):
        parse_config({"lifehistory": {"config": {"scaffold": {"bogus": 1}}}})
    p = tmp_path / "s.toml"
    p.write_text("[series]\nsource = 'embedded'\nsurprise = 1\n")
    with pytest.raises(ConfigError, match=r"s\.toml: series\.surprise: unknown key"):
        load_config(p)


def test_bad_values_and_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"dictionaries\.rule"):
        parse_config({"dictionaries": {"rule": "magic"}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[series\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_toml_round_trip(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("name = 'x'\n[dictionaries]\nrule = 'jumprelu'\nk = 8\n[llc]\nsteps = [0, 10]\n"
                 "[llc.sgld]\nnum_draws = 7\n")
    cfg = load_config(p)
    assert (cfg.name, cfg.dictionaries.rule, cfg.dictionaries.k, cfg.llc.steps, cfg.llc.sgld.num_draws) == \
        ("x", "jumprelu", 8, [0, 10], 7)
