"""Model benchmarking: parameters, MACs, throughput, latency and peak memory, measured interleaved.

    from lsnet.analysis.benchmark import benchmark_models
    rows = benchmark_models(['lsnet_t', 'efficientvit_m4'], batches=(1, 32), fuse=True, channels_last=True)

Every round runs each (model, backend, batch) once in the same order (`lsnet.analysis.timing.time_interleaved`), so
drift on a shared machine hits all models alike; reported times are medians with min and max over rounds.
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
from .flops import count_macs
from .plots import pyplot, save_figure
from .timing import time_interleaved


@dataclass
class BenchResult:
    model: str
    batch: int
    threads: int
    img_size: int
    backend: str  # "torch" or "onnxruntime"
    params_m: float
    gmacs: float
    images_per_s: float
    latency_ms_median: float
    latency_ms_min: float
    latency_ms_max: float
    peak_memory_mb: float | None = None
    accuracy: float | None = None
    extra: dict = field(default_factory=dict)


def peak_activation_memory_mb(model: torch.nn.Module, x: torch.Tensor) -> float:
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


def _onnx_runner(model: torch.nn.Module, input_size: tuple[int, int, int], workdir: Path, name: str,
                 threads: int) -> Callable[[torch.Tensor], object]:
    import onnxruntime

    from ..deploy import export_onnx

    path = workdir / f"{name}.onnx"
    check = export_onnx(model, path, input_size, dynamic_batch=True)
    if not check.passed:
        raise RuntimeError(f"onnx export of {name} does not match torch: {check}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x.numpy()})


def benchmark_models(
    names: Sequence[str],
    batches: Sequence[int] = (1, 32),
    threads: int | None = None,
    img_size: int = 224,
    fuse: bool = True,
    channels_last: bool = False,
    rounds: int = 10,
    onnxruntime: bool = False,
    measure_memory: bool = True,
    accuracy: dict[str, float] | None = None,
    workdir: str | Path = "results/onnx",
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Benchmark timm models (after `import lsnet`) interleaved round by round; see the module docstring."""
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    runners: dict[tuple[str, str], Callable[[torch.Tensor], object]] = {}
    info: dict[str, tuple[float, float, int]] = {}
    models = {}
    for name in names:
        model = timm.create_model(name).eval()
        in_chans = model.pretrained_cfg.get("input_size", (3,))[0]
        if fuse:
            model = fuse_model(model)
        model = model.to(memory_format=fmt)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        info[name] = (params, count_macs(model, (in_chans, img_size, img_size)) / 1e9, in_chans)
        models[name] = model
        runners[(name, "torch")] = model
        if onnxruntime:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            runners[(name, "onnxruntime")] = _onnx_runner(model, (in_chans, img_size, img_size), Path(workdir),
                                                          name, threads)
        if progress:
            progress(f"built {name}: {params:.2f}M params, {info[name][1]:.3f} GMACs")

    inputs = {(name, b): torch.randn(b, info[name][2], img_size, img_size).contiguous(memory_format=fmt)
              for name in names for b in batches}
    candidates = {(name, kind, b): (lambda run=run, x=inputs[(name, b)]: run(x))
                  for (name, kind), run in runners.items() for b in batches}
    round_done = (lambda r: progress(f"round {r}/{rounds}")) if progress else None
    with torch.inference_mode():
        timings = time_interleaved(candidates, rounds=rounds, threads=threads, progress=round_done)

    results = []
    for (name, kind, b), timing in timings.items():
        params, gmacs, in_chans = info[name]
        memory = None
        if measure_memory and kind == "torch":
            memory = peak_activation_memory_mb(models[name], inputs[(name, b)])
        results.append(BenchResult(
            model=name, batch=b, threads=threads, img_size=img_size, backend=kind, params_m=params, gmacs=gmacs,
            images_per_s=b / timing.median, latency_ms_median=timing.median * 1e3, latency_ms_min=timing.min * 1e3,
            latency_ms_max=timing.max * 1e3, peak_memory_mb=memory,
            accuracy=(accuracy or {}).get(name), extra=dict(fused=fuse, channels_last=channels_last),
        ))
    return results


def write_results(results: Sequence[BenchResult], out_dir: str | Path, stem: str = "bench") -> list[Path]:
    """Write CSV and JSON tables and a scatter plot (accuracy or GMACs vs images/s at the largest batch)."""
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
    try:
        plt = pyplot()
    except ImportError:
        return paths
    batch = max(r.batch for r in results)
    chosen = [r for r in results if r.batch == batch]
    use_accuracy = all(r.accuracy is not None for r in chosen)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in chosen:
        y = r.accuracy if use_accuracy else r.gmacs
        ax.scatter(r.images_per_s, y, marker="o" if r.backend == "torch" else "s")
        ax.annotate(f"{r.model}{'' if r.backend == 'torch' else ' (ort)'}", (r.images_per_s, y), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"images/s (batch {batch}, {chosen[0].threads} threads)")
    ax.set_ylabel("top-1 accuracy (%)" if use_accuracy else "GMACs")
    ax.grid(alpha=0.3)
    return [*paths, save_figure(fig, out_dir / f"{stem}.png", dpi=120)]


def format_table(results: Sequence[BenchResult]) -> str:
    lines = [f"{'model':<24}{'backend':<12}{'batch':>6}{'params M':>10}{'GMACs':>8}{'img/s':>9}"
             f"{'lat ms (min-max)':>24}{'peak MB':>9}"]
    for r in results:
        lat = f"{r.latency_ms_median:.2f} ({r.latency_ms_min:.2f}-{r.latency_ms_max:.2f})"
        memory = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-"
        lines.append(f"{r.model:<24}{r.backend:<12}{r.batch:>6}{r.params_m:>10.2f}{r.gmacs:>8.3f}"
                     f"{r.images_per_s:>9.1f}{lat:>24}{memory:>9}")
    return "\n".join(lines)
