"""Study files: matrix expansion (ids, counts, order), settings precedence, and one-line errors."""
from __future__ import annotations

import pytest
import yaml

from lsnet.cli.main import main
from lsnet.study import StudyError, load_study

VARIANTS = [{"label": "ls", "model": "lsnet_test"},
            {"label": "dw", "model": "lsnet_test", "model_kwargs": {"mixers": ["dw", "dw", "dw", "attn"]},
             "overrides": {"batch_size": 16}}]


def test_matrix_expands_to_stable_ids_in_order(write_study, tmp_path):
    path = write_study(dict(budget={"epochs": 2}, seeds=3, subsets=[1000, None], variants=VARIANTS))
    study = load_study(path, runs_dir=tmp_path / "runs")
    cells = study.cells()
    assert len(cells) == 2 * 2 * 3
    assert [c.id for c in cells[:7]] == ["ls-n1000-s0", "ls-n1000-s1", "ls-n1000-s2", "ls-nall-s0", "ls-nall-s1",
                                         "ls-nall-s2", "dw-n1000-s0"]
    assert len({c.id for c in cells}) == len(cells)
    assert {c.arm for c in cells} == {"ls-n1000", "ls-nall", "dw-n1000", "dw-nall"}
    assert study.cell_dir(cells[0]) == tmp_path / "runs" / "tiny" / "ls-n1000-s0"
    assert load_study(path, runs_dir=tmp_path / "runs").cells() == cells  # parsing twice: the same cells


def test_settings_precedence(write_study, tmp_path):
    """preset < quiet < base.overrides < the variant's overrides < what the study fixes per cell."""
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(dict(lr=1.0, batch_size=4, weight_decay=0.5, epochs=99, quiet=False,
                                          img_size=48)))
    path = write_study(dict(base={"preset": str(preset), "overrides": {"lr": 0.5, "batch_size": 8}},
                            budget={"epochs": 3}, seeds=[7], subsets=[500], variants=VARIANTS))
    study = load_study(path, runs_dir=tmp_path / "runs")
    plain, dw = (study.train_config(c) for c in study.cells())
    assert plain["weight_decay"] == 0.5 and plain["img_size"] == 48  # from the preset
    assert plain["quiet"] is True  # the study's default over the preset's
    assert plain["lr"] == 0.5 and plain["batch_size"] == 8  # base overrides over the preset
    assert dw["batch_size"] == 16 and dw["lr"] == 0.5  # the variant's overrides over the base
    assert dw["model_kwargs"] == {"mixers": ["dw", "dw", "dw", "attn"]} and plain["model_kwargs"] == {}
    assert plain["epochs"] == dw["epochs"] == 3  # the budget, not the preset's 99
    assert (dw["seed"], dw["train_subset"], dw["experiment"]) == (7, 500, "dw-n500-s7")
    assert dw["output"] == str(tmp_path / "runs" / "tiny") and dw["config"] == str(preset)


def test_budget_per_subset(write_study, tmp_path):
    path = write_study(dict(budget={"epochs": {1000: 30, "all": 2}}, seeds=1, subsets=[1000, None], variants=VARIANTS))
    study = load_study(path, runs_dir=tmp_path)
    assert {c.id: study.train_config(c)["epochs"] for c in study.cells()[:2]} == {"ls-n1000-s0": 30, "ls-nall-s0": 2}
    assert study.budget_text() == "30 / 2 epochs per cell on 1000 / all training images"


@pytest.mark.parametrize("change, match", [
    ({"epochs": 3}, r"unknown key 'epochs'.*allowed: name, description, base, budget"),
    ({"budget": {"cpu_seconds": 60}}, r"budget: unknown key 'cpu_seconds'; allowed: epochs"),
    ({"budget": {"epochs": 0}}, r"budget.epochs: expected integers >= 1"),
    ({"seeds": [0, 0]}, r"seeds: expected distinct values"),
    ({"budget": {"epochs": {5: 3}}}, r"budget.epochs: a mapping needs exactly one entry per subset \(all\)"),
    ({"subsets": [0]}, r"subsets: expected integers >= 1 or null"),
    ({"variants": [{"label": "a", "model": "lsnet_tt"}]}, r"variant 'a': unknown model 'lsnet_tt'; did you mean"),
    ({"variants": [{"label": "a", "model": "lsnet_test", "kwargs": {}}]},
     r"variant 1: unknown key 'kwargs' \(did you mean 'model_kwargs'\?\); allowed: label, model"),
    ({"variants": [{"label": "w/o lkp", "model": "lsnet_test"}]}, r"label 'w/o lkp' must be letters"),
    ({"variants": [{"label": "a", "model": "lsnet_test", "overrides": {"seed": 3}}]},
     r"variant 'a': overrides: seed cannot be overridden: the study sets model, model_kwargs, seed"),
    ({"variants": [{"label": "a", "model": "lsnet_test", "overrides": {"learning_rate": 3}}]},
     r"variant 'a': overrides: unknown key 'learning_rate'"),
    ({"variants": [{"label": "a", "model": "lsnet_test", "overrides": {"hflip": 2.0}}]},
     r"variant 'a': --hflip must be in \[0, 1\]"),
    ({"variants": [VARIANTS[0], VARIANTS[0]]}, r"labels must be unique; ls repeat"),
    ({"reference": "ref"}, r"reference 'ref' is not a variant label \(ls, dw\)"),
    ({"variants": [{"label": "a", "model": "lsnet_test", "compare_to": "a"}]},
     r"variant 'a': compare_to 'a' must be another variant's label"),
    ({"analysis": {"erf": {"variants": ["nope"]}}}, r"analysis.erf: variants must list labels"),
    ({"analysis": {"erf": [{"variants": ["ls"]}, {"variants": ["dw"], "stage": "s16"}, {"variants": ["nope"]}]}},
     r"analysis.erf\[2\]: variants must list labels"),
    ({"analysis": {"erf": [{"variants": ["ls"]}, {"variants": ["ls"]}]}}, r"analysis.erf: two blocks have the same"),
    ({"analysis": {"erff": {}}}, r"analysis: unknown key 'erff'"),
    ({"base": {"preset": "no_such_preset"}}, r"base.preset: config 'no_such_preset' not found"),
])
def test_bad_study_files_are_one_line_errors(write_study, change, match):
    data = dict(budget={"epochs": 1}, seeds=1, variants=VARIANTS)
    data.update(change)
    with pytest.raises(StudyError, match=match) as info:
        load_study(write_study(data))
    assert "\n" not in str(info.value)


def test_cli_prints_one_line(write_study, capsys):
    path = write_study(dict(budget={"epochs": 1}, seeds=1, variants=[{"label": "a", "model": "nope_model"}]))
    assert main(["study", "run", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope_model'" in err
    assert main(["study", "report", "missing.yaml"]) == 1
    assert "study file 'missing.yaml' not found" in capsys.readouterr().err
