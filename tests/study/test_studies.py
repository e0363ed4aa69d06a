"""The repository's study files load, give every arm at least 3 seeds and state their compute."""
from __future__ import annotations

from pathlib import Path

import pytest

from lsnet.study import load_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


def test_there_is_a_study_per_claim():
    assert {p.stem for p in STUDIES} >= {"lsnet_ablations", "conv2former_kernel_fusion", "lkca_small_data",
                                         "uniconvnet_erf"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_is_valid(path, tmp_path):
    study = load_study(path, runs_dir=tmp_path)
    assert len(study.seeds) >= 3
    assert "Compute estimate" in path.read_text()  # the total is stated where the study is defined
    assert len({c.id for c in study.cells()}) == len(study.variants) * len(study.subsets) * len(study.seeds)
