"""Named presets: ``BaselineConfig.from_preset`` and ``--preset`` on the baseline's commands."""

import dataclasses

import click
import pytest
from click.testing import CliRunner

from phow_baseline.config import PRESET_NOTES, PRESETS, BaselineConfig, ConfigError


def test_presets_are_data_with_notes():
    assert set(PRESETS) == set(PRESET_NOTES) == {"vlfeat", "uniandes", "strongest"}
    field_names = {f.name for f in dataclasses.fields(BaselineConfig)}
    for name, overrides in PRESETS.items():
        assert set(overrides) <= field_names, name
        BaselineConfig.from_preset(name)  # each one is valid


def test_vlfeat_is_the_0_2_defaults_caltech101_recipe_and_uniandes_its_image_settings():
    v = BaselineConfig.from_preset("vlfeat")
    assert (v.encoding, v.n_words, v.grids, v.kernel_map, v.C) == ("bow", 600, (2, 4), "homkermap", 10.0)
    assert v.feature_dtype == "float32"
    # 0.2's defaults: today's, with the settings whose defaults changed in 0.3 set back
    from phow_baseline.config import DEFAULTS_BEFORE_0_3

    assert v == BaselineConfig(**DEFAULTS_BEFORE_0_3, C=10.0)
    u = BaselineConfig.from_preset("uniandes")
    assert (u.size, u.equalization, u.encoding) == (256, "global", "bow")


def test_strongest_is_fisher_the_defaults_and_overrides_apply():
    s = BaselineConfig.from_preset("strongest")
    assert s == BaselineConfig()  # the recipe search's winner is the default (issue 25's rule)
    assert (s.encoding, s.fv_components, s.fv_pca_dims, s.regions) == ("fisher", 256, 80, "1x1+2x2")
    assert s.feature_dtype == "float16" and s.C == 1.0
    t = BaselineConfig.from_preset("strongest", C=3.0, size=None)
    assert t.C == 3.0 and t.size == s.size  # None: not given
    with pytest.raises(ConfigError, match="unknown preset 'best'; known: vlfeat, uniandes, strongest"):
        BaselineConfig.from_preset("best")
    with pytest.raises(ConfigError, match="C must be"):
        BaselineConfig.from_preset("vlfeat", C=-1.0)


def _probe():
    from phow_baseline.cli._options import baseline_options, config_from_options

    @click.command()
    @baseline_options(svm=True)
    @click.pass_context
    def probe(ctx, scheduler, **values):
        click.echo(repr(config_from_options(ctx, values).to_dict()))

    return probe


def test_preset_option_builds_the_config_and_lists_the_presets(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_probe(), ["--preset", "strongest", "--C", "3", "--dataset", "chestxray14"])
    assert res.exit_code == 0, res.output
    d = eval(res.output)  # the repr of a plain dict
    assert d["encoding"] == "fisher" and d["C"] == 3.0 and d["fv_components"] == 256
    res = runner.invoke(_probe(), ["--help"])
    assert "--preset [vlfeat|uniandes|strongest]" in res.output and "Caltech-101" in res.output
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    res = runner.invoke(_probe(), ["--preset", "vlfeat", "--config", str(cfg)])
    assert res.exit_code != 0 and "--preset and --config cannot be combined" in res.output


@pytest.mark.parametrize("command", ["train", "run", "cv"])
def test_train_run_and_cv_take_a_preset(command):
    from phow_baseline.cli import main

    res = CliRunner().invoke(main, [command, "--help"])
    assert res.exit_code == 0 and "--preset" in res.output


def test_a_saved_0_1_or_0_2_config_reads_as_the_bag_of_words_it_was(tmp_path):
    """0.1 stored no ``encoding`` and 0.2 no ``feature_dtype``: their models were bag-of-words models with float32
    shards, and stay so however the defaults move (``BaselineConfig.from_saved``, what model loading uses)."""
    v02 = BaselineConfig.from_preset("vlfeat").to_dict()
    v02.pop("feature_dtype")
    assert BaselineConfig.from_saved(v02) == BaselineConfig.from_preset("vlfeat")
    v01 = dict(v02)
    v01.pop("encoding")
    assert BaselineConfig.from_saved(v01) == BaselineConfig.from_preset("vlfeat")
    # a complete record is read as written, whatever it says
    full = BaselineConfig(C=3.0).to_dict()
    assert BaselineConfig.from_saved(full) == BaselineConfig(C=3.0) and BaselineConfig(C=3.0).encoding == "fisher"


def test_every_configuration_of_the_recipe_search_is_a_valid_config():
    """``benchmarks/bench_recipes.py``'s search is data: each row must build (a typo would cost hours later)."""
    import importlib.util
    from pathlib import Path

    from phow_baseline.encoding import encoding_for

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_recipes.py"
    spec = importlib.util.spec_from_file_location("bench_recipes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.REFERENCE in mod.SEARCH and {"coarse", "fine"} == {stage for stage, _ in mod.SEARCH.values()}
    for name, (_, settings) in mod.SEARCH.items():
        cfg = BaselineConfig.from_preset("vlfeat", **settings)
        assert encoding_for(cfg).name == cfg.encoding, name
    for name, (_, (a, b)) in mod.FUSIONS.items():
        assert a in mod.SEARCH and b in mod.SEARCH, name
