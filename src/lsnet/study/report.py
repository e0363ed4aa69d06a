"""Aggregate a study's finished cells: mean +- std over seeds per arm, Welch's t-test against the reference arm,
a markdown table, CSVs and plots; optionally the ERFs of the trained models.

    from lsnet.study import load_study, write_report
    paths = write_report(load_study("studies/lsnet_ablations.yaml"))     # -> runs/studies/<name>/report/

Per cell (read from its run folder): val top-1 of best.pth (the selection metric: metrics.jsonl / eval.json), the
test top-1 the engine scored once with best.pth (eval.json), epochs, CPU and wall seconds (cell.json, written by
the runner; the engine's own per-epoch training seconds are in cells.csv too). Per arm: params and GMACs of the
architecture (lsnet.analysis.flops at the training input size).
Welch's t-test (unequal variances, scipy.stats.ttest_ind) compares each arm's per-seed test top-1 with the
reference variant's on the same subset, when both have at least 3 finished seeds, and gives the 95% confidence
interval of the difference (an interval that holds both 0 and a paper's effect size means "inconclusive").
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from .runner import EVAL, METRICS, read_cell_record
from .spec import Cell, ErfAnalysis, Study

_logger = logging.getLogger(__name__)

__all__ = ["ArmSummary", "CellResult", "WelchResult", "archive_study", "collect", "mean_std", "summarize", "welch",
           "write_report"]

MIN_SEEDS_FOR_TEST = 3


@dataclass
class CellResult:
    """One finished cell's numbers."""

    cell: Cell
    run_dir: Path
    val_top1: float | None  # best.pth's val top-1 (None: no validation split)
    test_top1: float
    test_split: str
    best_epoch: int
    epochs: int
    cpu_seconds: float | None  # None: not run by `lsnet study run` (no cell.json)
    wall_seconds: float | None
    history: list[dict[str, Any]]
    config: dict[str, Any]
    unrecorded_epochs: int  # epochs whose process was killed before it recorded its time (not in cpu_seconds)


@dataclass
class ArmSummary:
    arm: str
    variant: str
    model: str
    subset: int | None
    seeds: list[int]
    val: tuple[float, float]  # mean, std over seeds
    test: tuple[float, float]
    cpu_seconds: tuple[float, float]
    wall_seconds: tuple[float, float]
    epochs: tuple[float, float]
    params: int | None = None
    gmacs: float | None = None
    reference: str | None = None  # the arm it is compared with (None: it is the reference)
    diff: float | None = None  # mean test top-1 minus the reference's
    t: float | None = None
    p: float | None = None
    ci: tuple[float, float] | None = None  # 95% confidence interval of diff
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for one value) of the values that are not None."""
    data = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(data) == 0:
        return math.nan, math.nan
    return float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else math.nan


class WelchResult(NamedTuple):
    diff: float  # mean(a) - mean(b)
    t: float
    p: float  # two-sided
    ci_low: float  # 95% confidence interval of the difference (Welch-Satterthwaite degrees of freedom)
    ci_high: float


def welch(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's unequal-variance t-test of a against b, with the 95% confidence interval of the difference of the
    means; nan t/p/interval with fewer than 3 values per side."""
    diff = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan
    if min(len(a), len(b)) < MIN_SEEDS_FOR_TEST:
        return WelchResult(diff, math.nan, math.nan, math.nan, math.nan)
    try:
        from scipy import stats
    except ImportError as err:
        raise ImportError("the study report's t-tests need scipy: pip install 'lsnet[study]'") from err
    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    interval = result.confidence_interval(0.95)
    return WelchResult(diff, float(result.statistic), float(result.pvalue), float(interval.low),
                       float(interval.high))


# ------------------------------------------------------------------------------------------------------ reading
def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _unrecorded_epochs(record: dict[str, Any], epochs: int) -> int:
    """Epochs that no segment of cell.json covers: a runner killed mid-cell (e.g. SIGKILL) records nothing."""
    if "segments" not in record:
        return 0
    covered = sum(s["end_epoch"] - s["start_epoch"] for s in record["segments"])
    return max(0, epochs - covered)


def read_cell(study: Study, cell: Cell) -> CellResult | None:
    """The cell's numbers, or None when it has not finished (no eval.json)."""
    run_dir = study.cell_dir(cell)
    if not (run_dir / EVAL).is_file():
        return None
    result = json.loads((run_dir / EVAL).read_text())
    history = _read_history(run_dir)
    record = read_cell_record(run_dir)
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    val = result.get("best_val_top1")
    return CellResult(cell=cell, run_dir=run_dir, val_top1=None if val is None else float(val),
                      test_top1=float(result["top1"]), test_split=str(result.get("split", "test")),
                      best_epoch=int(result.get("best_epoch") or 0), epochs=len(history),
                      cpu_seconds=record.get("cpu_seconds"), wall_seconds=record.get("wall_seconds"),
                      history=history, config=config, unrecorded_epochs=_unrecorded_epochs(record, len(history)))


def collect(study: Study) -> list[CellResult]:
    """Every finished cell of the study, in cell order."""
    return [r for r in (read_cell(study, cell) for cell in study.cells()) if r is not None]


def architecture_cost(config: dict[str, Any]) -> tuple[int, float]:
    """(parameters, GMACs per image at the run's input size) of the model a run's config.yaml describes."""
    import torch

    from ..analysis.flops import count_macs
    from ..checkpoints import create_model

    in_chans, size = int(config.get("in_chans") or 3), int(config.get("img_size") or 224)
    torch.manual_seed(0)
    model = create_model(config["model"], num_classes=config.get("num_classes"), in_chans=in_chans, img_size=size,
                         **(config.get("model_kwargs") or {}))
    return sum(p.numel() for p in model.parameters()), count_macs(model, (in_chans, size, size)) / 1e9


def summarize(study: Study, results: Sequence[CellResult], costs: bool = True) -> list[ArmSummary]:
    """One ArmSummary per arm with finished cells (study order), each compared with the reference on its subset."""
    by_arm: dict[str, list[CellResult]] = {}
    for r in results:
        by_arm.setdefault(r.cell.arm, []).append(r)
    arms = []
    for arm, cells in by_arm.items():
        first = cells[0].cell
        summary = ArmSummary(
            arm=arm, variant=first.variant.label, model=first.variant.model, subset=first.subset,
            seeds=[r.cell.seed for r in cells], val=mean_std([r.val_top1 for r in cells]),
            test=mean_std([r.test_top1 for r in cells]), cpu_seconds=mean_std([r.cpu_seconds for r in cells]),
            wall_seconds=mean_std([r.wall_seconds for r in cells]), epochs=mean_std([r.epochs for r in cells]))
        if costs and cells[0].config.get("model"):
            summary.params, summary.gmacs = architecture_cost(cells[0].config)
        arms.append(summary)
    for summary in arms:
        ref_variant = study.reference_of(study.variant(summary.variant))
        if ref_variant is None:
            continue
        ref_arm = Cell(ref_variant, summary.subset, 0).arm
        if ref_arm not in by_arm:
            continue
        summary.reference = ref_arm
        test = welch([r.test_top1 for r in by_arm[summary.arm]], [r.test_top1 for r in by_arm[ref_arm]])
        summary.diff, summary.t, summary.p, summary.ci = test.diff, test.t, test.p, (test.ci_low, test.ci_high)
    return arms


# -------------------------------------------------------------------------------------------------------- ERF
ERF_FILE = "erf.json"  # in the cell's run folder: best.pth's sha256 and, per ERF block, its settings and numbers
ARCHIVED_FILES = ("cell.yaml", "cell.json", "config.yaml", EVAL, METRICS, ERF_FILE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _erf_settings(erf: ErfAnalysis) -> dict[str, Any]:
    settings = dict(asdict(erf))
    settings["variants"], settings["thresholds"] = list(settings["variants"]), list(settings["thresholds"])
    return settings


def _erf_cell(erf: ErfAnalysis, result: CellResult) -> dict[str, float] | None:
    """ERF numbers of one trained cell's best.pth under one ERF block, cached in the cell's erf.json.

    erf.json holds best.pth's sha256 and a list of {settings, metrics}, one per block measured; a block is measured
    again when best.pth changed. An archived cell (`archive_study`: no best.pth) answers from its erf.json when it
    holds the block's settings, else None.
    """
    settings, best, cache = _erf_settings(erf), result.run_dir / "best.pth", result.run_dir / ERF_FILE
    stored = json.loads(cache.read_text()) if cache.is_file() else {}
    analyses = stored.get("analyses", [])
    found_metrics = next((a["metrics"] for a in analyses if a["settings"] == settings), None)
    if not best.is_file():
        return found_metrics
    checkpoint_sha256 = _sha256(best)
    if stored.get("checkpoint_sha256") != checkpoint_sha256:
        analyses, found_metrics = [], None
    if found_metrics is not None:
        return found_metrics
    from ..analysis.erf import compute_erfs
    from ..analysis.models import ModelSpec

    (found,) = compute_erfs([ModelSpec(result.config["model"], label=result.cell.id, checkpoint=str(best))],
                            erf.images, erf.num_images, stage=erf.stage, img_size=erf.img_size,
                            batch_size=erf.batch_size, mode=erf.mode, thresholds=erf.thresholds,
                            data_dir=result.config.get("data_dir"))
    m = found.metrics
    metrics = {"stage": found.stage, "stride": found.stride, "img_size": found.img_size,
               **{f"A{t}": m["area_ratio"][str(float(t))]["ratio"] for t in erf.thresholds},
               **{f"raw A{t}": m["area_ratio_raw"][str(float(t))]["ratio"] for t in erf.thresholds},
               **{k: m["radial"][k] for k in ("r50", "r90", "gaussian_r2", "monotonicity", "sigma")},
               "radial_profile": m["radial_profile"]["value"]}
    analyses = [*analyses, {"settings": settings, "metrics": metrics}]
    cache.write_text(json.dumps({"checkpoint_sha256": checkpoint_sha256, "analyses": analyses}, indent=2))
    return metrics


def erf_summaries(study: Study, erf: ErfAnalysis, results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """Per arm of one ERF block: mean +- std over seeds of each ERF number, Welch's test against the reference's."""
    per_arm: dict[str, list[dict[str, Any]]] = {}
    arm_cell: dict[str, Cell] = {}
    for r in results:
        if r.cell.variant.label in erf.variants:
            metrics = _erf_cell(erf, r)
            if metrics is not None:
                per_arm.setdefault(r.cell.arm, []).append(metrics)
                arm_cell[r.cell.arm] = r.cell
    rows = []
    for arm, cells in per_arm.items():
        ref_variant = study.reference_of(arm_cell[arm].variant)
        ref = Cell(ref_variant, arm_cell[arm].subset, 0).arm if ref_variant is not None else None
        row: dict[str, Any] = dict(arm=arm, seeds=len(cells), stage=cells[0]["stage"], stride=cells[0]["stride"],
                                   img_size=cells[0]["img_size"])
        for key in [k for k in cells[0] if k.startswith(("A", "raw A"))] + ["r50", "r90", "gaussian_r2",
                                                                            "monotonicity"]:
            values = [c[key] for c in cells]
            row[key] = mean_std(values)
            if ref in per_arm:
                row[f"{key} p"] = welch(values, [c[key] for c in per_arm[ref]]).p
        length = min(len(c["radial_profile"]) for c in cells)  # the ERF centre, so the ring count, varies by seed
        row["radial_profile"] = np.mean([c["radial_profile"][:length] for c in cells], axis=0).tolist()
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------------ writing
def _pm(value: tuple[float, float], digits: int = 2) -> str:
    mean, std = value
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if not math.isnan(std) else "")


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def markdown_table(study: Study, arms: Sequence[ArmSummary]) -> str:
    head = ["arm", "model", "train images", "seeds", "val top-1 %", "test top-1 %", "Δ test vs ref",
            "95% CI of Δ", "Welch t", "p", "params M", "GMACs", "CPU-s / cell", "epochs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in arms:
        ref = "(reference)" if study.reference_of(study.variant(a.variant)) is None else a.reference or "–"
        diff = f"{a.diff:+.2f} ({ref})" if a.diff is not None else ref
        ci = "–" if a.ci is None or math.isnan(a.ci[0]) else f"[{a.ci[0]:+.2f}, {a.ci[1]:+.2f}]"
        lines.append("| " + " | ".join([
            a.arm, a.model, str(a.subset) if a.subset is not None else "all", str(len(a.seeds)), _pm(a.val),
            _pm(a.test), diff, ci, _num(a.t, ".2f"), _num(a.p, ".3g"),
            _num(a.params / 1e6 if a.params is not None else None, ".3f"), _num(a.gmacs, ".4f"),
            _pm(a.cpu_seconds, 0), _pm(a.epochs, 0)]) + " |")
    return "\n".join(lines) + "\n"


def _erf_table(rows: Sequence[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k.startswith(("A", "raw A"))] + ["r50", "r90", "gaussian_r2", "monotonicity"]
    head = ["arm", "seeds", "stage (stride)", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["arm"], str(row["seeds"]), f"{row['stage']} (s{row['stride']})"]
        for key in keys:
            text = _pm(row[key], 3)
            if f"{key} p" in row and not math.isnan(row[f"{key} p"]):
                text += f" (p {row[f'{key} p']:.3g})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["arm"]  # every row's keys, first seen first
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _arm_row(a: ArmSummary) -> dict[str, Any]:
    return dict(arm=a.arm, variant=a.variant, model=a.model, train_subset=a.subset if a.subset is not None else "all",
                seeds=" ".join(map(str, a.seeds)), n=len(a.seeds), val_top1_mean=a.val[0], val_top1_std=a.val[1],
                test_top1_mean=a.test[0], test_top1_std=a.test[1], reference=a.reference or "",
                diff_vs_reference=a.diff, diff_ci95_low=a.ci[0] if a.ci else None,
                diff_ci95_high=a.ci[1] if a.ci else None,
                welch_t=a.t, welch_p=a.p, params=a.params, gmacs=a.gmacs, cpu_seconds_mean=a.cpu_seconds[0],
                cpu_seconds_std=a.cpu_seconds[1], wall_seconds_mean=a.wall_seconds[0], epochs_mean=a.epochs[0])


def _cell_row(r: CellResult) -> dict[str, Any]:
    return dict(cell=r.cell.id, arm=r.cell.arm, variant=r.cell.variant.label, model=r.cell.variant.model,
                seed=r.cell.seed, train_subset=r.cell.subset if r.cell.subset is not None else "all",
                val_top1=r.val_top1, test_top1=r.test_top1, test_split=r.test_split, best_epoch=r.best_epoch,
                epochs=r.epochs, cpu_seconds=r.cpu_seconds, wall_seconds=r.wall_seconds,
                unrecorded_epochs=r.unrecorded_epochs,
                train_seconds=sum(row.get("train_seconds") or 0.0 for row in r.history), run_dir=str(r.run_dir))


def _plots(arms: Sequence[ArmSummary], results: Sequence[CellResult],
           erf_rows: Sequence[Sequence[dict[str, Any]]], out: Path) -> list[Path]:
    """Test top-1 vs params / GMACs / CPU-seconds, learning curves and, per ERF block, the radial profiles."""
    from ..analysis.plots import pyplot, save_figure

    plt = pyplot()
    paths = []
    for key, label, name in (("params", "parameters (M)", "accuracy_vs_params.png"),
                             ("gmacs", "GMACs per image", "accuracy_vs_gmacs.png"),
                             ("cpu_seconds", "CPU-seconds per cell", "accuracy_vs_cpu_seconds.png")):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for a in arms:
            x = a.cpu_seconds[0] if key == "cpu_seconds" else getattr(a, key)
            if x is None or (isinstance(x, float) and math.isnan(x)):
                continue
            x = x / 1e6 if key == "params" else x
            ax.errorbar([x], [a.test[0]], yerr=[0 if math.isnan(a.test[1]) else a.test[1]], fmt="o", capsize=3,
                        label=a.arm)
            ax.annotate(a.arm, (x, a.test[0]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set(xlabel=label, ylabel="test top-1 (%), mean ± std over seeds", title=f"test top-1 vs {label}")
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, out / name, dpi=120))
    subsets = sorted({r.cell.subset or 0 for r in results})
    fig, axes = plt.subplots(1, len(subsets), figsize=(5.5 * len(subsets), 4.2), squeeze=False)
    for ax, subset in zip(axes[0], subsets):
        for a in arms:
            if (a.subset or 0) != subset:
                continue
            curves = [[row.get("val_top1") for row in r.history] for r in results if r.cell.arm == a.arm]
            length = min(len(c) for c in curves)
            data = np.array([[np.nan if v is None else v for v in c[:length]] for c in curves], dtype=float)
            epochs = np.arange(1, length + 1)
            mean = np.nanmean(data, axis=0)
            ax.plot(epochs, mean, marker="o", label=a.variant)
            if len(curves) > 1:
                std = np.nanstd(data, axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set(xlabel="epoch", ylabel="val top-1 (%)", title=f"train images: {subset or 'all'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    paths.append(save_figure(fig, out / "learning_curves.png", dpi=120))
    erf_blocks = [rows for rows in erf_rows if rows]
    if erf_blocks:
        fig, axes = plt.subplots(1, len(erf_blocks), figsize=(6 * len(erf_blocks), 4), squeeze=False)
        for ax, rows in zip(axes[0], erf_blocks):
            for row in rows:
                ax.plot(row["radial_profile"], label=row["arm"])
            ax.set(xlabel="radius (px)", ylabel="contribution (peak 1), mean over seeds",
                   title=f"ERF radial profiles, {rows[0]['img_size']} px, s{rows[0]['stride']}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        paths.append(save_figure(fig, out / "erf_radial_profiles.png", dpi=120))
    return paths


def write_report(study: Study, out_dir: str | Path | None = None, plots: bool = True) -> dict[str, Path]:
    """results.md, arms.csv, cells.csv (+ erf.csv) and plots in out_dir (default <study folder>/report)."""
    out = Path(out_dir) if out_dir is not None else study.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = collect(study)
    arms = summarize(study, results)
    erf_rows = [erf_summaries(study, erf, results) for erf in study.erfs]  # one list of arm rows per block
    total_cpu = sum(r.cpu_seconds or 0.0 for r in results)
    unrecorded = [r for r in results if r.unrecorded_epochs]
    lower_bound = (f"; a lower bound: {sum(r.unrecorded_epochs for r in unrecorded)} epoch(s) of "
                   f"{', '.join(r.cell.id for r in unrecorded)} ran in a process killed before it recorded its "
                   "time" if unrecorded else "")
    expected = len(study.cells())
    lines = [f"# Study {study.name}", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        f"Study file `{study.path}`; {len(results)} of {expected} cells finished. Budget: {study.budget_text()} "
        f"(every arm alike); seeds {', '.join(map(str, study.seeds))}. Selection: best.pth is the epoch with the "
        "best validation top-1 (held-out training images); the test split is scored once per cell with it. "
        f"Welch's t-test (and the 95% confidence interval of the difference) on per-seed test top-1 against the "
        f"reference arm ({study.reference}, or the arm a variant names in compare_to) where both arms have "
        f">= {MIN_SEEDS_FOR_TEST} seeds. Compute spent: {total_cpu / 3600:.2f} CPU-hours (process user + system "
        f"time of the training processes, all cells{lower_bound}).", "", markdown_table(study, arms)]
    for erf, rows in zip(study.erfs, erf_rows):
        if rows:
            size = f"{erf.img_size} px" if erf.img_size is not None else "the training size"
            lines += ["", f"## Effective receptive fields of the trained models (best.pth; {erf.num_images} images "
                      f"'{erf.images}' at {size}, stage {erf.stage}, mode {erf.mode})", "",
                      "A t: RepLKNet's high-contribution area ratio on log10(1+x); raw A t: on the raw map; r50/r90: "
                      "radii (px) holding 50/90% of the contribution; gaussian_r2: R² of a Gaussian fit to the radial "
                      "profile; p: Welch's test against the reference arm.", "", _erf_table(rows)]
    paths = {"markdown": out / "results.md"}
    paths["markdown"].write_text("\n".join(lines))
    paths["arms_csv"] = _write_csv(out / "arms.csv", [_arm_row(a) for a in arms])
    paths["cells_csv"] = _write_csv(out / "cells.csv", [_cell_row(r) for r in results])
    if any(erf_rows):
        paths["erf_csv"] = _write_csv(out / "erf.csv", [
            {"analysis": i}
            | {k: (v[0] if isinstance(v, tuple) else v) for k, v in row.items() if k != "radial_profile"}
            | {f"{k} std": v[1] for k, v in row.items() if isinstance(v, tuple)}
            for i, rows in enumerate(erf_rows, 1) for row in rows])
    if plots and results:
        try:
            for path in _plots(arms, results, erf_rows, out):
                paths[path.stem] = path
        except ImportError as err:  # matplotlib is optional: the tables and CSVs are written anyway
            _logger.warning(f"no plots: {err}")
    return paths


def archive_study(study: Study, dest: str | Path) -> list[Path]:
    """Copy every finished cell's small files (ARCHIVED_FILES, no checkpoints) to <dest>/<study name>/<cell id>/.

    The ERFs of the study's ERF arms are measured first (from best.pth, into erf.json), so
    `load_study(path, runs_dir=dest)` reports the same tables from the archive alone. Returns the cell folders.
    """
    results = collect(study)
    for erf in study.erfs:
        for r in results:
            if r.cell.variant.label in erf.variants:
                _erf_cell(erf, r)
    folders = []
    for r in results:
        folder = Path(dest) / study.name / r.cell.id
        folder.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED_FILES:
            if (r.run_dir / name).is_file():
                shutil.copy2(r.run_dir / name, folder / name)
        folders.append(folder)
    return folders
