"""The study report's maths on a fixture of fake run folders: per-arm mean / sample std, Welch's t-test (against a
hand-computed t and Welch-Satterthwaite p), params; and the files it writes."""
from __future__ import annotations

import csv
import json
import math
import statistics

import pytest
import timm
import yaml
from scipy import stats

from lsnet.study import load_study, write_report
from lsnet.study.report import collect, summarize, welch

# per-seed (val top-1, test top-1, CPU-seconds); the third arm has only 2 seeds: no t-test
NUMBERS = {
    "ls": [(90.1, 89.5, 100.0), (90.7, 90.2, 110.0), (89.9, 89.9, 120.0)],
    "dw": [(88.0, 87.1, 80.0), (88.6, 88.3, 85.0), (87.2, 86.0, 90.0)],
    "wo": [(89.0, 88.8, 95.0), (89.4, 89.6, 96.0)],
}


@pytest.fixture
def fake_study(write_study, tmp_path):
    variants = [{"label": label, "model": "lsnet_test"} for label in NUMBERS]
    variants[1]["model_kwargs"] = {"mixers": ["dw", "dw", "dw", "attn"]}
    variants[2]["compare_to"] = "dw"  # tested against dw, not the reference ls
    study = load_study(write_study(dict(budget={"epochs": 2}, seeds=3, subsets=[500], variants=variants)),
                       runs_dir=tmp_path / "runs")
    for cell in study.cells():
        numbers = NUMBERS[cell.variant.label]
        if cell.seed >= len(numbers):
            continue  # unfinished: no folder
        val, test, cpu = numbers[cell.seed]
        run_dir = study.cell_dir(cell)
        run_dir.mkdir(parents=True)
        config = dict(study.train_config(cell), in_chans=1, num_classes=10, img_size=32)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        (run_dir / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": e, "val_top1": val - 2 + e, "train_seconds": 1.0}) + "\n" for e in (1, 2)))
        (run_dir / "eval.json").write_text(json.dumps({"top1": test, "best_val_top1": val, "split": "test",
                                                       "best_epoch": 2}))
        (run_dir / "cell.json").write_text(json.dumps({"cpu_seconds": cpu, "wall_seconds": cpu / 2}))
    return study


def test_welch_against_hand_formula():
    a, b = [89.5, 90.2, 89.9], [87.1, 88.3, 86.0]
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 3
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)  # Welch-Satterthwaite
    diff, got_t, got_p, low, high = welch(a, b)
    assert diff == pytest.approx(statistics.mean(a) - statistics.mean(b))
    assert got_t == pytest.approx(t) and got_p == pytest.approx(2 * stats.t.sf(abs(t), df))
    half_width = stats.t.ppf(0.975, df) * math.sqrt(va + vb)  # 95% interval of the difference
    assert (low, high) == pytest.approx((diff - half_width, diff + half_width))
    assert all(math.isnan(v) for v in welch(a, b[:2])[1:])  # fewer than 3 values: no test


def test_arm_summaries(fake_study):
    results = collect(fake_study)
    assert len(results) == 8  # 3 + 3 + 2 finished cells
    arms = {a.arm: a for a in summarize(fake_study, results)}
    ls, dw, wo = arms["ls-n500"], arms["dw-n500"], arms["wo-n500"]
    for arm, label in ((ls, "ls"), (dw, "dw"), (wo, "wo")):
        val, test, cpu = zip(*NUMBERS[label])
        assert arm.val == pytest.approx((statistics.mean(val), statistics.stdev(val)))
        assert arm.test == pytest.approx((statistics.mean(test), statistics.stdev(test)))
        assert arm.cpu_seconds == pytest.approx((statistics.mean(cpu), statistics.stdev(cpu)))
        assert arm.epochs[0] == 2
    assert ls.reference is None and ls.t is None  # the reference arm
    assert dw.reference == "ls-n500" and dw.t < 0 and dw.p < 0.05
    assert dw.ci[0] < dw.diff < dw.ci[1] < 0  # p < 0.05: the 95% interval excludes 0
    assert wo.reference == "dw-n500" and math.isnan(wo.t) and wo.diff == pytest.approx(89.2 - 87.133333, abs=1e-5)
    plain = timm.create_model("lsnet_test", in_chans=1, num_classes=10, img_size=32)
    assert ls.params == sum(p.numel() for p in plain.parameters()) > dw.params
    assert 0 < dw.gmacs < ls.gmacs


def test_report_files(fake_study):
    paths = write_report(fake_study)
    for key in ("markdown", "arms_csv", "cells_csv", "accuracy_vs_params", "accuracy_vs_gmacs",
                "accuracy_vs_cpu_seconds", "learning_curves"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    table = paths["markdown"].read_text()
    assert "8 of 9 cells finished" in table and "Budget: 2 epochs per cell" in table
    assert "lower bound" not in table  # every epoch's time is recorded
    assert "| dw-n500 | lsnet_test | 500 | 3 | 87.93 ± 0.70 | 87.13 ± 1.15 | -2.73 (ls-n500) |" in table
    with open(paths["arms_csv"]) as f:
        rows = {row["arm"]: row for row in csv.DictReader(f)}
    assert float(rows["dw-n500"]["test_top1_mean"]) == pytest.approx(statistics.mean([87.1, 88.3, 86.0]))
    with open(paths["cells_csv"]) as f:
        assert len(list(csv.DictReader(f))) == 8


def test_epochs_without_recorded_time_make_the_total_a_lower_bound(fake_study):
    """A runner killed mid-cell records no segment: the epochs no segment covers are counted and named."""
    def segment(start: int, end: int) -> dict:
        return {"start_epoch": start, "end_epoch": end, "cpu_seconds": 50.0, "wall_seconds": 25.0}

    records = {"ls-n500-s0": [segment(1, 2)],  # epoch 1 trained by a killed process, epoch 2 resumed and recorded
               "ls-n500-s1": [segment(0, 1), segment(1, 2)]}  # interrupted with Ctrl-C: both segments recorded
    for cell_id, segments in records.items():
        (fake_study.root / cell_id / "cell.json").write_text(json.dumps({
            "segments": segments, "cpu_seconds": 50.0 * len(segments), "wall_seconds": 25.0 * len(segments)}))
    unrecorded = {r.cell.id: r.unrecorded_epochs for r in collect(fake_study)}
    assert unrecorded["ls-n500-s0"] == 1 and unrecorded["ls-n500-s1"] == 0 and sum(unrecorded.values()) == 1
    paths = write_report(fake_study)
    assert "a lower bound: 1 epoch(s) of ls-n500-s0 ran in a process killed" in paths["markdown"].read_text()
    with open(paths["cells_csv"]) as f:
        assert {row["cell"]: row["unrecorded_epochs"] for row in csv.DictReader(f)}["ls-n500-s0"] == "1"


def _erf_metrics(r50: float) -> dict:
    return {"stage": "s32", "stride": 32, "img_size": 32, "A0.5": r50 / 10, "raw A0.5": r50 / 20, "r50": r50,
            "r90": 2 * r50, "gaussian_r2": 0.9, "monotonicity": 1.0, "sigma": r50, "radial_profile": [1.0, 0.5]}


def _fake_compute_erfs(calls: list):
    """A stand-in for lsnet.analysis.erf.compute_erfs: r50 2 (arm 'ls') or 1 (others) x img_size / 32."""

    def fake_compute_erfs(specs, *args, img_size=None, **kwargs):
        (spec,) = specs
        calls.append(spec.label)
        size = img_size or 32
        r50 = (2.0 if spec.label.startswith("ls") else 1.0) * size / 32
        return [type("Found", (), dict(stage="s32", stride=32, img_size=size, metrics={
            "area_ratio": {"0.5": {"ratio": r50 / 10}}, "area_ratio_raw": {"0.5": {"ratio": r50 / 20}},
            "radial": {"r50": r50, "r90": 2 * r50, "gaussian_r2": 0.9, "monotonicity": 1.0, "sigma": r50},
            "radial_profile": {"value": [1.0, 0.5]}}))()]

    return fake_compute_erfs


@pytest.fixture
def erf_study(write_study, tmp_path):
    """Two arms x 3 seeds with finished cells and a best.pth stand-in each; ERFs measured by a counting fake."""
    variants = [{"label": "ls", "model": "lsnet_test"}, {"label": "dw", "model": "lsnet_test"}]
    path = write_study(dict(budget={"epochs": 1}, seeds=3, subsets=[500], variants=variants,
                            analysis={"erf": {"variants": ["ls", "dw"], "thresholds": [0.5]}}))
    study = load_study(path, runs_dir=tmp_path / "runs")
    for cell in study.cells():
        run_dir = study.cell_dir(cell)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(study.train_config(cell), img_size=32)))
        (run_dir / "eval.json").write_text(json.dumps({"top1": 80.0 + cell.seed, "best_val_top1": 81.0}))
        (run_dir / "cell.json").write_text(json.dumps({"cpu_seconds": 10.0, "wall_seconds": 5.0}))
        (run_dir / "best.pth").write_bytes(f"weights of {cell.id}".encode())
    return path, study


def test_erf_cached_by_checkpoint_and_archived_without_it(erf_study, tmp_path, monkeypatch):
    import lsnet.analysis.erf as erf_module
    from lsnet.study import archive_study
    from lsnet.study.report import erf_summaries

    calls = []
    monkeypatch.setattr(erf_module, "compute_erfs", _fake_compute_erfs(calls))
    path, study = erf_study
    rows = {row["arm"]: row for row in erf_summaries(study, study.erfs[0], collect(study))}
    assert len(calls) == 6 and rows["ls-n500"]["r50"] == (2.0, 0.0) and rows["dw-n500"]["r50"] == (1.0, 0.0)
    erf_summaries(study, study.erfs[0], collect(study))
    assert len(calls) == 6  # cached in each cell's erf.json
    changed = study.cell_dir(study.cells()[0])
    (changed / "best.pth").write_bytes(b"retrained")
    erf_summaries(study, study.erfs[0], collect(study))
    assert calls[6:] == [study.cells()[0].id]  # a new checkpoint is measured again

    folders = archive_study(study, tmp_path / "archive")
    assert len(folders) == 6 and len(calls) == 7
    assert sorted(p.name for p in folders[0].iterdir()) == ["cell.json", "config.yaml", "erf.json", "eval.json"]
    archived = load_study(path, runs_dir=tmp_path / "archive")
    same = [json.dumps(erf_summaries(s, s.erfs[0], collect(s)), sort_keys=True)  # NaN-safe equality
            for s in (archived, study)]
    assert same[0] == same[1] and '"r50": [2.0, 0.0]' in same[0]
    assert len(calls) == 7  # the archive answers from erf.json, with no checkpoint
    assert write_report(archived, plots=False)["markdown"].read_text().count("| ls-n500 |") == 2  # accuracy + ERF


def test_archived_erf_with_other_settings_is_not_used(erf_study, tmp_path):
    from lsnet.study.report import erf_summaries

    path, study = erf_study
    for cell in study.cells():
        run_dir = study.cell_dir(cell)
        (run_dir / "best.pth").unlink()
        (run_dir / "erf.json").write_text(json.dumps({"analyses": [{"settings": {"stage": "s16"},
                                                                     "metrics": _erf_metrics(3.0)}]}))
    assert erf_summaries(study, study.erfs[0], collect(study)) == []


def test_erf_blocks_measured_once_each_and_cached_together(erf_study, tmp_path, monkeypatch):
    import lsnet.analysis.erf as erf_module
    from lsnet.study.report import erf_summaries

    calls = []
    monkeypatch.setattr(erf_module, "compute_erfs", _fake_compute_erfs(calls))
    path, _ = erf_study
    data = yaml.safe_load(path.read_text())
    data["analysis"]["erf"] = [data["analysis"]["erf"], dict(data["analysis"]["erf"], img_size=128)]
    path.write_text(yaml.safe_dump(data))
    study = load_study(path, runs_dir=tmp_path / "runs")
    first = erf_summaries(study, study.erfs[0], collect(study))
    assert len(calls) == 6
    second = erf_summaries(study, study.erfs[1], collect(study))
    assert len(calls) == 12  # the new block is measured; the first block's numbers stay in erf.json
    rows = {row["arm"]: row for row in second}
    assert rows["ls-n500"]["r50"] == (8.0, 0.0) and rows["ls-n500"]["img_size"] == 128
    assert {row["arm"]: row["r50"] for row in first} == {"ls-n500": (2.0, 0.0), "dw-n500": (1.0, 0.0)}
    cache = json.loads((study.cell_dir(study.cells()[0]) / "erf.json").read_text())
    assert [a["settings"]["img_size"] for a in cache["analyses"]] == [None, 128]
    paths = write_report(study, plots=False)
    assert len(calls) == 12
    text = paths["markdown"].read_text()
    assert text.count("| ls-n500 |") == 3 and "at the training size" in text and "at 128 px" in text
    with open(paths["erf_csv"]) as f:
        assert [(row["analysis"], row["arm"], row["r50"]) for row in csv.DictReader(f)] == [
            ("1", "ls-n500", "2.0"), ("1", "dw-n500", "1.0"), ("2", "ls-n500", "8.0"), ("2", "dw-n500", "4.0")]
