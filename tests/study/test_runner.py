"""The study runner: finished cells are skipped, interrupted ones resume, started cells keep their settings; and
one real tiny study (interrupted after its first epoch, then resumed, then reported)."""
from __future__ import annotations

import json
import sys

import pytest
import yaml

import lsnet.study.runner as runner
from lsnet.study import StudyError, load_study, run_study, write_report
from lsnet.train import Trainer

TINY = dict(budget={"epochs": 2}, seeds=[0, 1], subsets=[300],
            variants=[{"label": "ls", "model": "lsnet_test"}, {"label": "dw", "model": "lsnet_test"}])


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the training call: record (cell, state) and write what a finished run leaves (eval.json)."""
    calls = []

    def fake(state):
        calls.append((state.cell.id, state.status))
        (state.run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
        (state.run_dir / "eval.json").write_text(json.dumps({"top1": 50.0, "best_val_top1": 51.0, "split": "test"}))
        return 0

    monkeypatch.setattr(runner, "_train_in_process", fake)
    return calls


def test_finished_cells_are_skipped_and_interrupted_ones_resume(write_study, tmp_path, fake_training):
    study = load_study(write_study(TINY), runs_dir=tmp_path / "runs")
    done, interrupted = (study.cell_dir(c) for c in study.cells()[:2])
    for run_dir, cell in ((done, study.cells()[0]), (interrupted, study.cells()[1])):
        run_dir.mkdir(parents=True)
        (run_dir / "cell.yaml").write_text(yaml.safe_dump(study.train_config(cell)))
    (done / "eval.json").write_text("{}")
    (interrupted / "last.pth").write_bytes(b"")
    (interrupted / "metrics.jsonl").write_text('{"epoch": 1}\n')
    states = run_study(study, in_process=True, echo=lambda line: None)
    assert [s.status for s in states] == ["done", "resume", "new", "new"]
    assert fake_training == [("ls-n300-s1", "resume"), ("dw-n300-s0", "new"), ("dw-n300-s1", "new")]
    record = json.loads((interrupted / "cell.json").read_text())
    assert record["segments"][0]["start_epoch"] == 1 and record["segments"][0]["end_epoch"] == 2
    assert record["cell"] == "ls-n300-s1" and record["arm"] == "ls-n300" and record["budget_epochs"] == 2
    new = study.cell_dir(study.cells()[2])
    assert yaml.safe_load((new / "cell.yaml").read_text()) == study.train_config(study.cells()[2])
    fake_training.clear()
    run_study(study, in_process=True, echo=lambda line: None)  # everything finished: nothing runs
    assert fake_training == []


def test_dry_run_and_only(write_study, tmp_path, fake_training):
    study = load_study(write_study(TINY), runs_dir=tmp_path / "runs")
    lines = []
    run_study(study, only="dw-*", dry_run=True, echo=lines.append)
    assert fake_training == [] and not study.root.exists()
    assert len(lines) == 3 and "dw-n300-s0: new: " in lines[1] and "--config" in lines[1]
    run_study(study, only="*-s1", in_process=True, echo=lambda line: None)
    assert fake_training == [("ls-n300-s1", "new"), ("dw-n300-s1", "new")]
    with pytest.raises(StudyError, match=r"--only 'x\*' matches none of the 4 cells of tiny"):
        run_study(study, only="x*")


def test_a_started_cell_keeps_its_settings(write_study, tmp_path, fake_training):
    path = write_study(TINY)
    study = load_study(path, runs_dir=tmp_path / "runs")
    run_study(study, only="ls-n300-s0", in_process=True, echo=lambda line: None)
    changed = dict(TINY, base={"overrides": {"lr": 0.01}})
    study = load_study(write_study(changed), runs_dir=tmp_path / "runs")
    with pytest.raises(StudyError, match=r"cell ls-n300-s0 was run with other settings \(lr: None -> 0.01\); "
                                         r"restore the study file, or delete"):
        run_study(study, in_process=True, echo=lambda line: None)


def test_real_tiny_study_resumes_after_an_interruption(write_study, tmp_path, fashion_mnist_dir, monkeypatch):
    """lsnet_test at 32 px on 300 real Fashion-MNIST images: Ctrl-C after epoch 1, then the same command again."""
    data = dict(base={"overrides": dict(
        data_dir=str(fashion_mnist_dir), img_size=32, batch_size=32, lr=4e-3, warmup_epochs=0, val_size=200,
        test_subset=200, scale=[1.0, 1.0], ratio=[1.0, 1.0], aa="none", color_jitter=0.0, crop_pct=1.0,
        workers=0, threads=1)}, budget={"epochs": 2}, seeds=[0], subsets=[300],
        variants=[{"label": "ls", "model": "lsnet_test"}])
    study = load_study(write_study(data), runs_dir=tmp_path / "runs")
    run_dir = study.cell_dir(study.cells()[0])
    metrics = run_dir / "metrics.jsonl"
    save = Trainer._save

    def save_then_interrupt(trainer, epoch, is_best):  # Ctrl-C right after epoch 1's checkpoint and metrics line
        save(trainer, epoch, is_best)
        if epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_study(study, in_process=True, echo=lambda line: None)
    first_epoch = json.loads(metrics.read_text().splitlines()[0])
    assert not (run_dir / "eval.json").exists() and (run_dir / "last.pth").is_file()

    states = run_study(study, in_process=True, echo=lambda line: None)
    assert [s.status for s in states] == ["resume"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first_epoch  # epoch 1 kept, epoch 2 added
    segments = json.loads((run_dir / "cell.json").read_text())["segments"]
    assert [(s["start_epoch"], s["exit_status"]) for s in segments] == [(0, 130), (1, 0)]
    evaluated = json.loads((run_dir / "eval.json").read_text())
    assert evaluated["split"] == "test" and evaluated["num_images"] == 200

    paths = write_report(study, plots=False)
    table = paths["markdown"].read_text()
    assert f"| ls-n300 | lsnet_test | 300 | 1 | {evaluated['best_val_top1']:.2f} | {evaluated['top1']:.2f} |" in table


def test_subprocess_cells_log_their_output_and_failures_do_not_stop_the_study(write_study, tmp_path, monkeypatch):
    """One process per cell: its output goes to train.log, its CPU time to cell.json; a failing cell is reported at
    the end, after the other cells ran."""
    script = ("import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); sum(i * i for i in range(300000)); "
              "print('training', d.name); bad = d.name.startswith('ls-n300-s0'); "
              "bad or (d / 'eval.json').write_text(json.dumps({'top1': 1.0, 'split': 'test'})); "
              "sys.exit(3 if bad else 0)")
    monkeypatch.setattr(runner, "_command", lambda state: [sys.executable, "-c", script, str(state.run_dir)])
    study = load_study(write_study(TINY), runs_dir=tmp_path / "runs")
    lines = []
    with pytest.raises(StudyError, match=r"1 cell\(s\) failed: ls-n300-s0; read their train.log"):
        run_study(study, echo=lines.append)
    assert sum("failed (exit status 3)" in line for line in lines) == 1
    good = study.cell_dir(study.cells()[1])
    assert "training ls-n300-s1" in (good / "train.log").read_text()
    segment = json.loads((good / "cell.json").read_text())["segments"][0]
    assert segment["mode"] == "subprocess" and segment["exit_status"] == 0 and segment["cpu_seconds"] > 0
    assert all((study.cell_dir(c) / "eval.json").is_file() for c in study.cells()[1:])
