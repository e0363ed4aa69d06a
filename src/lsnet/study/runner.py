"""Run a study's cells through the training engine, one process at a time, resumably.

    from lsnet.study import load_study, run_study
    run_study(load_study("studies/lsnet_ablations.yaml"), only="lsnet_t-*")

A cell whose run folder holds eval.json is finished and skipped; one with last.pth but no eval.json was interrupted
and resumes from it (`lsnet train --resume`); any other starts afresh. Each cell runs as its own
`python -m lsnet.train` process (`lsnet train`'s entry point; or in this process with `in_process=True`), so
threads, memory and random state never carry over between cells. Besides the engine's files the run folder gets

    cell.yaml   the settings the study asked for (a later run refuses to mix them with other settings)
    cell.json   the cell's identity and one record per training segment: wall and CPU seconds (the process's user +
                system time, all threads; the budget actually spent, interrupted work included), epochs, exit status
    train.log   the training process's output (subprocess mode)
"""
from __future__ import annotations

import fnmatch
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .spec import Cell, Study, StudyError

__all__ = ["CellState", "cell_state", "read_cell_record", "run_study", "select_cells"]

CELL_CONFIG, CELL_RECORD, CELL_LOG = "cell.yaml", "cell.json", "train.log"
EVAL, LAST, METRICS = "eval.json", "last.pth", "metrics.jsonl"


@dataclass
class CellState:
    cell: Cell
    run_dir: Path
    status: str  # 'done' (eval.json), 'resume' (last.pth, no eval.json) or 'new'
    epochs_done: int


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / METRICS
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def cell_state(study: Study, cell: Cell) -> CellState:
    run_dir = study.cell_dir(cell)
    status = "done" if (run_dir / EVAL).is_file() else "resume" if (run_dir / LAST).is_file() else "new"
    return CellState(cell, run_dir, status, _epochs_done(run_dir))


def select_cells(study: Study, only: str | None = None) -> list[Cell]:
    """The study's cells, or those whose id matches the glob `only` (e.g. 'lsnet_t-*', '*-s0')."""
    cells = study.cells()
    if only is None:
        return cells
    chosen = [c for c in cells if fnmatch.fnmatchcase(c.id, only)]
    if not chosen:
        raise StudyError(f"--only {only!r} matches none of the {len(cells)} cells of {study.name} (e.g. "
                         f"{', '.join(c.id for c in cells[:3])}); `lsnet study run {study.path} --dry-run` lists them")
    return chosen


def read_cell_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CELL_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_unchanged(state: CellState, wanted: dict[str, Any]) -> None:
    """A started cell must continue with the settings it started with."""
    path = state.run_dir / CELL_CONFIG
    if state.status == "new" or not path.is_file():
        return
    before = yaml.safe_load(path.read_text()) or {}
    changed = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
    if changed:
        raise StudyError(f"cell {state.cell.id} was {'run' if state.status == 'done' else 'started'} with other "
                         f"settings ({', '.join(f'{k}: {before.get(k)!r} -> {wanted.get(k)!r}' for k in changed)}); "
                         f"restore the study file, or delete {state.run_dir} to run the cell again")


def _command(state: CellState) -> list[str]:
    base = [sys.executable, "-m", "lsnet.train"]  # `lsnet train` without the CLI layer (imports point down)
    if state.status == "resume":
        return [*base, "--resume", str(state.run_dir)]
    return [*base, "--config", str(state.run_dir / CELL_CONFIG)]


def _train_subprocess(state: CellState) -> int:
    """One `lsnet train` process; its output is appended to train.log. Returns its exit status."""
    with open(state.run_dir / CELL_LOG, "a") as log:
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(_command(state))}\n")
        log.flush()
        process = subprocess.Popen(_command(state), stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT: let it stop (it saves nothing mid-epoch)
            process.wait()
            raise


def _train_in_process(state: CellState) -> int:
    from ..checkpoints import read_checkpoint_config
    from ..train import train

    if state.status == "resume":
        config = {k: v for k, v in read_checkpoint_config(state.run_dir / LAST).items() if k != "resume"}
        train(config, resume=str(state.run_dir))
    else:
        train(yaml.safe_load((state.run_dir / CELL_CONFIG).read_text()))
    return 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write_record(study: Study, state: CellState, segment: dict[str, Any]) -> None:
    cell = state.cell
    record = read_cell_record(state.run_dir) or dict(
        study=study.name, cell=cell.id, arm=cell.arm, variant=cell.variant.label, model=cell.variant.model,
        model_kwargs=cell.variant.model_kwargs, seed=cell.seed, train_subset=cell.subset,
        budget_epochs=study.epochs_for(cell.subset),
        segments=[])
    record["segments"].append(segment)
    record["cpu_seconds"] = sum(s["cpu_seconds"] for s in record["segments"])
    record["wall_seconds"] = sum(s["wall_seconds"] for s in record["segments"])
    (state.run_dir / CELL_RECORD).write_text(json.dumps(record, indent=2))


def _run_cell(study: Study, state: CellState, in_process: bool) -> int:
    state.run_dir.mkdir(parents=True, exist_ok=True)
    if state.status == "new":
        (state.run_dir / CELL_CONFIG).write_text(yaml.safe_dump(study.train_config(state.cell), sort_keys=False))
    segment = dict(started=time.strftime("%Y-%m-%dT%H:%M:%S"), mode="in-process" if in_process else "subprocess",
                   start_epoch=state.epochs_done, host=platform.node(), cpu_count=os.cpu_count())
    wall, cpu = time.perf_counter(), (time.process_time() if in_process else _children_cpu())
    status = 130
    try:
        status = _train_in_process(state) if in_process else _train_subprocess(state)
        return status
    except Exception:
        status = 1
        raise
    finally:  # also when interrupted: the CPU time was spent
        cpu = (time.process_time() if in_process else _children_cpu()) - cpu
        segment.update(wall_seconds=time.perf_counter() - wall, cpu_seconds=cpu, exit_status=status,
                       end_epoch=_epochs_done(state.run_dir))
        _write_record(study, state, segment)


def _describe(state: CellState, total_epochs: int) -> str:
    if state.status == "done":
        return "done (skipped)"
    if state.status == "resume":
        return f"resume after epoch {state.epochs_done}/{total_epochs}"
    return "new"


def run_study(study: Study, only: str | None = None, dry_run: bool = False, in_process: bool = False,
              echo: Callable[[str], Any] = print) -> list[CellState]:
    """Train every (selected) cell that is not finished, in order; returns the cells' states before the run.

    A cell that fails is reported and the next one runs; StudyError at the end names the failed cells.
    dry_run: print each cell's state and the command it would run, train nothing.
    """
    cells = select_cells(study, only)
    states = [cell_state(study, cell) for cell in cells]
    for state in states:
        _check_unchanged(state, study.train_config(state.cell))
    todo = [s for s in states if s.status != "done"]
    echo(f"study {study.name}: {len(cells)} cells ({len(states) - len(todo)} done, {len(todo)} to run), "
         f"{study.budget_text()}, folder {study.root}")
    failed = []
    for i, state in enumerate(states, 1):
        line = f"[{i}/{len(states)}] {state.cell.id}: {_describe(state, study.epochs_for(state.cell.subset))}"
        if state.status == "done" or dry_run:
            echo(line if state.status == "done" else f"{line}: {' '.join(_command(state))}")
            continue
        echo(f"{line} ... (log {state.run_dir / CELL_LOG})" if not in_process else f"{line} ...")
        status = _run_cell(study, state, in_process)
        record = read_cell_record(state.run_dir)
        segment = record["segments"][-1]
        if status == 130:
            raise KeyboardInterrupt
        if status != 0 or not (state.run_dir / EVAL).is_file():
            failed.append(state.cell.id)
            echo(f"    failed (exit status {status}); see {state.run_dir / CELL_LOG}")
            continue
        result = json.loads((state.run_dir / EVAL).read_text())
        echo(f"    val top-1 {result.get('best_val_top1') or float('nan'):.2f}%, {result.get('split')} top-1 "
             f"{result['top1']:.2f}%, {segment['wall_seconds'] / 60:.1f} min, {segment['cpu_seconds']:.0f} CPU-s")
    if failed:
        raise StudyError(f"{len(failed)} cell(s) failed: {', '.join(failed)}; read their train.log, fix the cause "
                         f"and run `lsnet study run {study.path}` again (finished cells are skipped)")
    return states
