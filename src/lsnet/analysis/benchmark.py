"""Model benchmarking: parameters, MACs, throughput, latency, GFLOP/s and peak memory of models on several runtimes
and precisions, measured interleaved.

    from lsnet.analysis.benchmark import benchmark_models
    rows = benchmark_models(['lsnet_t', 'efficientvit_m4'], batches=(1, 32), threads=(1, 2), channels_last=True,
                            runtimes=('eager', 'onnxruntime'), precisions=('fp32', 'int8'), calibration='fashion-mnist')

For each thread count, one interleaved run (`lsnet.analysis.timing.time_interleaved`) times every (model, runtime,
precision, batch) once per round in the same order, so drift on a shared machine hits all alike; reported times are
medians with min and max over rounds. Runners come from `lsnet.deploy.runtimes.build_runner`; a combination that
cannot run here becomes an 'n/a' row with the reason. Each runner's logits are compared with the fused model in eager
fp32 (NCHW) on the timing input.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch

from ..deploy import fuse as fuse_model
from ..deploy.runtimes import Runner, Unsupported, build_runner
from .flops import count_macs
from .plots import pyplot, save_figure
from .timing import time_interleaved


@dataclass
class BenchResult:
    model: str
    runtime: str  # lsnet.deploy.runtimes.RUNTIMES
    precision: str  # lsnet.deploy.runtimes.PRECISIONS
    batch: int
    threads: int
    img_size: int
    params_m: float
    gmacs: float  # per image
    status: str  # "ok", or "n/a" (with the reason in `note`)
    note: str  # what really runs (runtime, layout, quantization), or why it cannot
    images_per_s: float | None = None
    latency_ms_median: float | None = None
    latency_ms_min: float | None = None
    latency_ms_max: float | None = None
    gflops_per_s: float | None = None  # 2 * MACs * batch / median time
    max_rel_error: float | None = None  # max |logits - eager fp32| / max |eager fp32|, on the timing input
    top1_agreement: float | None = None  # fraction of the timing batch where top-1 equals eager fp32's
    peak_memory_mb: float | None = None
    accuracy: float | None = None
    extra: dict = field(default_factory=dict)


def peak_activation_memory_mb(model: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Peak of CPU memory allocated during one forward pass (torch profiler's allocation events), in MB."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        if event.cpu_children:  # count leaf allocations only, parents repeat their children's
            continue
        running += event.cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


def _compare(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(max relative error, top-1 agreement) of logits `got` against `want`, both (B, classes)."""
    error = float((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-12))
    return error, float((got.argmax(1) == want.argmax(1)).double().mean())


def benchmark_models(
    names: Sequence[str],
    batches: Sequence[int] = (1, 32),
    threads: Sequence[int] | int | None = None,
    img_size: int = 224,
    fuse: bool = True,
    channels_last: bool = False,
    rounds: int = 10,
    runtimes: Sequence[str] = ("eager",),
    precisions: Sequence[str] = ("fp32",),
    calibration: str | None = None,
    calibration_images: int = 256,
    measure_memory: bool = True,
    accuracy: dict[str, float] | None = None,
    workdir: str | Path = "results/onnx",
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Benchmark timm models (after `import lsnet`); see the module docstring.

    threads: torch / onnxruntime intra-op thread counts, one interleaved run each (default: torch's current count).
    calibration: data for onnxruntime int8 ('fashion-mnist' or an image folder; `calibration_images` training
    images, `lsnet.deploy.quantize.calibration_images`). workdir: ONNX files, one folder per model.
    """
    from ..deploy.quantize import calibration_images as load_calibration

    thread_counts = [threads] if isinstance(threads, int) else list(threads or [torch.get_num_threads()])
    say = progress or (lambda message: None)
    models, info, inputs, references, calibrations = {}, {}, {}, {}, {}
    for name in names:
        model = timm.create_model(name).eval()
        in_chans = model.pretrained_cfg.get("input_size", (3,))[0]
        model = fuse_model(model) if fuse else model
        input_size = (in_chans, img_size, img_size)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        models[name], info[name] = model, (params, count_macs(model, input_size) / 1e9, input_size)
        for b in batches:
            inputs[(name, b)] = torch.randn(b, *input_size)
            with torch.inference_mode():
                references[(name, b)] = model(inputs[(name, b)]).float()
        say(f"built {name}: {params:.2f}M params, {info[name][1]:.3f} GMACs")

    def runner_for(name: str, runtime: str, precision: str, n_threads: int) -> Runner | str:
        """A runner, or the reason it cannot run."""
        input_size = info[name][2]
        calib = None
        if runtime == "onnxruntime" and precision == "int8" and calibration is not None:
            if name not in calibrations:  # one tensor per model, so the int8 file is made once for all thread counts
                calibrations[name] = load_calibration(calibration, "train", calibration_images, input_size)[0]
            calib = calibrations[name]
        try:
            runner = build_runner(models[name], runtime, precision, input_size, threads=n_threads,
                                  workdir=Path(workdir) / name, channels_last=channels_last, calibration=calib,
                                  batches=batches)
        except Unsupported as err:
            say(f"{name} {runtime} {precision}: n/a ({err})")
            return str(err)
        say(f"{name} {runtime} {precision}: {runner.note}")
        return runner

    torch_runners = {(name, rt, p): runner_for(name, rt, p, thread_counts[0])
                     for name in names for rt in runtimes if rt != "onnxruntime" for p in precisions}
    results = []
    for n_threads in thread_counts:
        runners = dict(torch_runners)
        runners.update({(name, "onnxruntime", p): runner_for(name, "onnxruntime", p, n_threads)
                        for name in names if "onnxruntime" in runtimes for p in precisions})
        order = [(name, rt, p) for name in names for rt in runtimes for p in precisions]
        candidates, prepared = {}, {}
        for key in order:
            runner = runners[key]
            if isinstance(runner, Runner):
                for b in batches:
                    x = prepared[(*key, b)] = runner.prepare(inputs[(key[0], b)])
                    candidates[(*key, b)] = lambda run=runner.run, x=x: run(x)
        round_done = (lambda r, n=n_threads: say(f"{n} threads: round {r}/{rounds}"))
        with torch.inference_mode():
            timings = time_interleaved(candidates, rounds=rounds, threads=n_threads, progress=round_done)
        for name, runtime, precision in order:
            runner = runners[(name, runtime, precision)]
            params, gmacs, _ = info[name]
            for b in batches:
                row = BenchResult(model=name, runtime=runtime, precision=precision, batch=b, threads=n_threads,
                                  img_size=img_size, params_m=params, gmacs=gmacs, status="n/a",
                                  note=runner if isinstance(runner, str) else runner.note,
                                  accuracy=(accuracy or {}).get(name),
                                  extra=dict(fused=fuse, channels_last=channels_last))
                results.append(row)
                if isinstance(runner, str):
                    continue
                timing = timings[(name, runtime, precision, b)]
                with torch.inference_mode():
                    logits = runner(inputs[(name, b)])
                    if measure_memory and runtime == "eager":
                        row.peak_memory_mb = peak_activation_memory_mb(runner.run, prepared[(name, runtime,
                                                                                             precision, b)])
                row.max_rel_error, row.top1_agreement = _compare(logits, references[(name, b)])
                row.status, row.images_per_s = "ok", b / timing.median
                row.latency_ms_median, row.latency_ms_min = timing.median * 1e3, timing.min * 1e3
                row.latency_ms_max, row.gflops_per_s = timing.max * 1e3, 2 * gmacs * b / timing.median
    return results


def write_results(results: Sequence[BenchResult], out_dir: str | Path, stem: str = "bench") -> list[Path]:
    """Write CSV and JSON tables and a scatter plot (accuracy or GMACs vs images/s at the largest batch and the
    first thread count; n/a rows are in the tables only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
    json_path.write_text(json.dumps(rows, indent=1))
    with csv_path.open("w", newline="") as handle:
        columns = [k for k in rows[0] if k != "extra"]
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    paths = [json_path, csv_path]
    ran = [r for r in results if r.status == "ok"]
    try:
        plt = pyplot()
    except ImportError:
        return paths
    if not ran:
        return paths
    batch, threads = max(r.batch for r in ran), ran[0].threads
    chosen = [r for r in ran if r.batch == batch and r.threads == threads]
    use_accuracy = all(r.accuracy is not None for r in chosen)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in chosen:
        y = r.accuracy if use_accuracy else r.gmacs
        plain = r.runtime == "eager" and r.precision == "fp32"
        ax.scatter(r.images_per_s, y, marker="o" if plain else "s")
        ax.annotate(r.model if plain else f"{r.model} ({r.runtime} {r.precision})", (r.images_per_s, y), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"images/s (batch {batch}, {threads} threads)")
    ax.set_ylabel("top-1 accuracy (%)" if use_accuracy else "GMACs")
    ax.grid(alpha=0.3)
    return [*paths, save_figure(fig, out_dir / f"{stem}.png", dpi=120)]


def format_table(results: Sequence[BenchResult]) -> str:
    """One line per row; n/a rows give their reason; notes (what ran) follow the table, once per runner."""
    lines = [f"{'model':<20}{'runtime':<12}{'prec':<6}{'thr':>4}{'batch':>6}{'params M':>9}{'GMACs':>7}{'img/s':>9}"
             f"{'lat ms (min-max)':>24}{'GFLOP/s':>9}{'rel err':>9}{'top-1 =':>8}{'peak MB':>8}"]
    notes = {}
    for r in results:
        head = (f"{r.model:<20}{r.runtime:<12}{r.precision:<6}{r.threads:>4}{r.batch:>6}{r.params_m:>9.2f}"
                f"{r.gmacs:>7.3f}")
        if r.status != "ok":
            lines.append(f"{head}  n/a: {r.note}")
            continue
        notes[(r.model, r.runtime, r.precision)] = r.note
        lat = f"{r.latency_ms_median:.2f} ({r.latency_ms_min:.2f}-{r.latency_ms_max:.2f})"
        memory = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-"
        lines.append(f"{head}{r.images_per_s:>9.1f}{lat:>24}{r.gflops_per_s:>9.1f}{r.max_rel_error:>9.1e}"
                     f"{r.top1_agreement:>8.0%}{memory:>8}")
    lines += [f"  {model} {runtime} {precision}: {note}" for (model, runtime, precision), note in notes.items()]
    return "\n".join(lines)
