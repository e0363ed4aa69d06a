"""An interrupted run (kill -9 right after epoch 1's checkpoint) resumed with --resume ends exactly like an
uninterrupted run with the same seed: same weights, same optimizer state, same metrics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import torch
from train_helpers import folder_flags

from lsnet.cli.main import main

KILL_AFTER_EPOCH_1 = textwrap.dedent("""
    import os, signal, sys
    import lsnet.train.engine as engine
    save = engine.Trainer._save
    def save_then_die(self, epoch, is_best):
        save(self, epoch, is_best)
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    engine.Trainer._save = save_then_die
    from lsnet.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")
TIMING = ("train_images_per_sec", "train_seconds", "time")


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_resume_after_kill_matches_uninterrupted_run(folder_dir, tmp_path):
    # augmentation, EMA and mixup all draw random numbers: the resumed run must restore every generator
    extra = ["--aa", "rand-m9-mstd0.5", "--reprob", "0.25", "--mixup", "0.8", "--cutmix", "1.0", "--model-ema",
             "--model-ema-decay", "0.9", "--drop-path", "0.1", "--seed", "7"]
    assert main(["train", *folder_flags(folder_dir, tmp_path, "full", epochs=2), *extra]) == 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_EPOCH_1, "train",
                             *folder_flags(folder_dir, tmp_path, "killed", epochs=2), *extra],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "killed"
    assert torch.load(run / "last.pth", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".*.tmp-*"))  # no half-written files left behind

    assert main(["train", "--resume", str(run)]) == 0  # settings come back from the checkpoint
    full = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    resumed = torch.load(run / "last.pth", weights_only=True)
    assert resumed["epoch"] == full["epoch"] == 2
    for key in ("model", "model_ema"):
        for name, tensor in full[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    full_opt, resumed_opt = full["optimizer"]["state"], resumed["optimizer"]["state"]
    assert all(torch.equal(full_opt[i]["exp_avg"], resumed_opt[i]["exp_avg"]) for i in full_opt)
    assert metrics(tmp_path / "full") == metrics(run)
    # the held-out test evaluation of best.pth (read back from disk when the best epoch ran before the kill)
    full_eval, resumed_eval = (json.loads((d / "eval.json").read_text()) for d in (tmp_path / "full", run))
    assert full_eval["split"] == resumed_eval["split"] == "test"
    assert (full_eval["top1"], full_eval["loss"]) == (resumed_eval["top1"], resumed_eval["loss"])
