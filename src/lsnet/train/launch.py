"""The command-line front end of training, shared by `lsnet train` and torchrun's `python -m lsnet.train`.

    parser = add_arguments(argparse.ArgumentParser())    # --nproc, --list-configs and one flag per TrainConfig field
    sys.exit(run(parser.parse_args()))                    # resolve the config, re-launch under torchrun, or train
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .config import TrainConfig, add_train_arguments, list_presets, load_preset, resolve_config, save_config


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--nproc", type=int, default=1,
                        help="spawn this many processes with torchrun (DistributedDataParallel; gloo on CPU)")
    parser.add_argument("--list-configs", action="store_true", help="list the YAML presets and exit")
    return add_train_arguments(parser)


def spawn(cfg: TrainConfig, nproc: int) -> int:
    """Re-launch as `torchrun -m lsnet.train --config <resolved yaml>` so every rank sees identical settings."""
    if not cfg.resume and not cfg.experiment:
        folder = Path(cfg.data_dir or ".").resolve().name  # as the Trainer names its runs
        what = {"detection": f"{cfg.detector}-{cfg.model}-{folder}",
                "semantic": f"{cfg.segmenter}-{cfg.model}-{folder}"}.get(cfg.task, f"{cfg.model}-{cfg.dataset}")
        cfg = cfg.replace(experiment=f"{time.strftime('%Y%m%d-%H%M%S')}-{what}")
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=".launch-", dir=cfg.output, delete=False) as f:
        path = f.name
    save_config(cfg, path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "lsnet.train", "--config", path]
    print(" ".join(command), flush=True)
    try:
        return subprocess.call(command)
    finally:
        os.unlink(path)


def run(args: argparse.Namespace) -> int:
    """List presets, or train with the resolved config (in this process, or `--nproc` processes under torchrun)."""
    if args.list_configs:
        for name in list_presets():
            values = load_preset(name)
            task = values.get("task")
            if task == "detection":
                size = (f"detector={values.get('detector', 'retinanet')} min_size={values.get('min_size', '-')} "
                        f"max_size={values.get('max_size', '-')}")
            elif task == "semantic":
                size = f"segmenter={values.get('segmenter', 'semantic_fpn')} crop_size={values.get('crop_size', '-')}"
            else:
                size = f"img_size={values.get('img_size', '-')}"
            print(f"{name:<34} model={values.get('model', '-')} epochs={values.get('epochs', '-')} {size}")
        return 0
    try:
        cfg = resolve_config(args)
        if args.nproc > 1 and "RANK" not in os.environ:
            return spawn(cfg, args.nproc)
        from .engine import train

        train(cfg)
    except KeyboardInterrupt:
        print("interrupted; continue with `lsnet train --resume <run folder>`", file=sys.stderr)
        return 130
    return 0
