"""Deployment latency: LSNet against its peers through every runtime and precision, in one interleaved run.

    python benchmarks/latency.py                                   # batch 1, 1 and 2 threads, the issue's models
    python benchmarks/latency.py --models lsnet_t efficientvit_m4 --batch 32 --out results/latency_b32
    python benchmarks/latency.py --runtime eager,compile,onnxruntime   # torch.compile too (minutes per model)

Every (model, runtime, precision) is timed by `lsnet.analysis.benchmark.benchmark_models` (fused models, 224 px,
channels_last for the torch runtimes, one interleaved run per thread count; int8 = onnxruntime static QDQ calibrated
on --calibration training images). Writes <out>/latency.md with, per thread count and batch:
- every model's median ms per (runtime, precision), and its best path;
- each LSNet against its peer, each through its own best path: peer ms / LSNet ms (> 1: LSNet is faster), once over
  fp32 paths only and once over every precision;
- GFLOP/s of each model's best fp32 path and LSNet's fraction of the best model's on the same runtime and threads;
- the low-precision speed-ups (int8 and bf16 over fp32 on the same runtime).
The targets themselves are not in this script: it reports ratios, the README says what they were measured against.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

import lsnet  # noqa: F401  (registers the models)
from lsnet.analysis.benchmark import BenchResult, benchmark_models, write_results

MODELS = ["lsnet_t", "efficientvit_m4", "lsnet_s", "efficientvit_m5", "lsnet_b", "repvit_m1_1", "cpubone_t0",
          "mobilenetv4_conv_small"]
PAIRS = [("lsnet_t", "efficientvit_m4"), ("lsnet_s", "efficientvit_m5"), ("lsnet_b", "repvit_m1_1")]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--runtime", default="eager,onnxruntime", help="comma list of lsnet.deploy RUNTIMES")
    parser.add_argument("--precision", default="fp32,bf16,int8", help="comma list of lsnet.deploy PRECISIONS")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calibration", default="fashion-mnist", help="int8 calibration data (training images)")
    parser.add_argument("--out", default="results/latency")
    return parser.parse_args(argv)


def path_name(r: BenchResult) -> str:
    return f"{r.runtime} {r.precision}"


def best_path(rows: list[BenchResult], precisions: tuple[str, ...] | None = None) -> BenchResult | None:
    """The fastest row that ran (optionally among some precisions)."""
    ran = [r for r in rows if r.status == "ok" and (precisions is None or r.precision in precisions)]
    return min(ran, key=lambda r: r.latency_ms_median) if ran else None


def latency_tables(results: list[BenchResult]) -> str:
    """The markdown report: per (threads, batch) the latency table, the pairs, GFLOP/s and low-precision speed-ups."""
    groups: dict[tuple[int, int], dict[str, list[BenchResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        groups[(r.threads, r.batch)][r.model].append(r)
    lines = []
    for (threads, batch), by_model in sorted(groups.items()):
        paths = list(dict.fromkeys(path_name(r) for rows in by_model.values() for r in rows))
        lines += [f"## batch {batch}, {threads} thread(s): median ms (n/a: cannot run here, reason below)", "",
                  "| model | " + " | ".join(paths) + " | best path |", "|---" * (len(paths) + 2) + "|"]
        reasons = {}
        for model, rows in by_model.items():
            cells = {path_name(r): f"{r.latency_ms_median:.2f}" if r.status == "ok" else "n/a" for r in rows}
            reasons.update({path_name(r): r.note for r in rows if r.status != "ok"})
            best = best_path(rows)
            best_text = f"{best.latency_ms_median:.2f} ({path_name(best)})" if best else "-"
            lines.append(f"| {model} | " + " | ".join(cells.get(p, "-") for p in paths) + f" | {best_text} |")
        lines += [""] + [f"- n/a `{p}`: {reason}" for p, reason in reasons.items()] + [""]

        pair_lines = []
        for ours, peer in PAIRS:
            if ours in by_model and peer in by_model:
                for label, precisions in (("fp32", ("fp32",)), ("any precision", None)):
                    a, b = best_path(by_model[ours], precisions), best_path(by_model[peer], precisions)
                    if a and b:
                        pair_lines.append(f"| {ours} vs {peer} | {label} | {a.latency_ms_median:.2f} ({path_name(a)}) "
                                          f"| {b.latency_ms_median:.2f} ({path_name(b)}) "
                                          f"| {b.latency_ms_median / a.latency_ms_median:.2f}x |")
        if pair_lines:
            lines += ["Each model through its own best path; speed-up = peer ms / LSNet ms (> 1: LSNet faster).", "",
                      "| pair | paths | LSNet ms | peer ms | speed-up |", "|---|---|---|---|---|", *pair_lines, ""]

        runtimes = list(dict.fromkeys(r.runtime for rows in by_model.values() for r in rows))
        lines += ["GFLOP/s (2 x MACs x batch / median time, fp32) and each model's fraction of the best model's on the "
                  "same runtime:", "", "| model | " + " | ".join(runtimes) + " |", "|---" * (len(runtimes) + 1) + "|"]
        fp32 = {(m, r.runtime): r.gflops_per_s for m, rows in by_model.items() for r in rows
                if r.precision == "fp32" and r.status == "ok"}
        top = {rt: max((v for (m, k), v in fp32.items() if k == rt), default=None) for rt in runtimes}
        for model in by_model:
            cells = [f"{fp32[(model, rt)]:.1f} ({fp32[(model, rt)] / top[rt]:.0%})" if (model, rt) in fp32 else "-"
                     for rt in runtimes]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines += ["", "Low-precision speed-up over fp32 on the same runtime (fp32 ms / low-precision ms):", "",
                  "| model | path | speed-up |", "|---|---|---|"]
        for model, rows in by_model.items():
            base = {r.runtime: r for r in rows if r.precision == "fp32" and r.status == "ok"}
            for r in rows:
                if r.precision != "fp32" and r.status == "ok" and r.runtime in base:
                    lines.append(f"| {model} | {path_name(r)} | "
                                 f"{base[r.runtime].latency_ms_median / r.latency_ms_median:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = benchmark_models(
        args.models, batches=args.batch, threads=args.threads, img_size=224, fuse=True, channels_last=True,
        rounds=args.rounds, runtimes=args.runtime.split(","), precisions=args.precision.split(","),
        calibration=args.calibration, measure_memory=False, workdir=Path(tempfile.gettempdir()) / "lsnet-latency-onnx",
        progress=lambda message: print(f"  {message}", flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Latency: {platform.processor() or platform.machine()}, {torch.get_num_threads()} cores visible, "
              f"torch {torch.__version__}, fused, 224 px, channels_last (torch runtimes), medians of {args.rounds} "
              f"interleaved rounds\n\nCommand: `{command.strip()}`\n\n")
    (out / "latency.md").write_text(header + latency_tables(results))
    print(header + latency_tables(results))
    for path in write_results(results, out, stem="latency"):
        print(f"wrote {path}")
    print(f"wrote {out / 'latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
