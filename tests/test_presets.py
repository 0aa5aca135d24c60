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


def test_vlfeat_is_todays_caltech101_recipe_and_uniandes_its_image_settings():
    v = BaselineConfig.from_preset("vlfeat")
    assert v == BaselineConfig()
    assert (v.encoding, v.n_words, v.grids, v.kernel_map, v.C) == ("bow", 600, (2, 4), "homkermap", 10.0)
    u = BaselineConfig.from_preset("uniandes")
    assert (u.size, u.equalization, u.encoding) == (256, "global", "bow")


def test_strongest_is_fisher_and_overrides_apply():
    s = BaselineConfig.from_preset("strongest")
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
