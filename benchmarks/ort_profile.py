"""Per-op-type onnxruntime profile of exported models: the compact LS-conv graph against the shift-and-add one.

    python benchmarks/ort_profile.py lsnet_t efficientvit_m4                 # batch 1, 2 threads, both SKA forms
    python benchmarks/ort_profile.py lsnet_t --batch 8 --threads 1 --runs 20
    python benchmarks/ort_profile.py lsnet_t --out results/ort_profile_lsnet_t.md

Each model is fused and exported with `lsnet.deploy.export_onnx` once per `--ska-form` (every export is checked
against the PyTorch model). onnxruntime's own profiler (`SessionOptions.enable_profiling`) then records `--runs`
runs after `--warmup` unprofiled-in-the-table runs; the table gives, per op type and form, the nodes executed, the
kernel time per run and its share of the total kernel time, then the nodes in the file, the nodes onnxruntime
executed (its optimiser adds layout Reorders and fuses others away) and the wall time per run of plain sessions
timed interleaved round by round (`lsnet.analysis.timing`). Timings are for this machine only: say which.
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import timm
import torch

import lsnet  # noqa: F401
from lsnet.analysis.timing import time_interleaved
from lsnet.deploy import SKA_FORMS, export_onnx, fuse


@dataclass
class Profile:
    """One session's profile: per op type, the distinct nodes executed and the kernel seconds per run."""

    nodes: dict[str, int]
    seconds: dict[str, float]
    nodes_in_file: int

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def session_options(threads: int, profile_prefix: str | None = None) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def profile_session(path: str, feed: dict[str, np.ndarray], threads: int, runs: int, warmup: int,
                    workdir: str) -> Profile:
    """Run `warmup + runs` times with profiling on; aggregate the kernel events of the last `runs` runs."""
    session = onnxruntime.InferenceSession(path, session_options(threads, f"{workdir}/ort"),
                                           providers=["CPUExecutionProvider"])
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    start = run_starts[warmup]
    names, seconds = collections.defaultdict(set), collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < start:
            continue
        op_type = event["args"]["op_name"]
        names[op_type].add(event["name"])
        seconds[op_type] += event["dur"] * 1e-6 / runs
    nodes_in_file = len(onnx.load(path, load_external_data=False).graph.node)
    return Profile({k: len(v) for k, v in names.items()}, dict(seconds), nodes_in_file)


def markdown_table(profiles: dict[str, Profile], wall: dict[str, str]) -> str:
    forms = list(profiles)
    first = profiles[forms[0]].seconds
    op_types = sorted({t for p in profiles.values() for t in p.seconds}, key=lambda t: -first.get(t, 0.0))
    head = "| op type | " + " | ".join(f"{f} nodes | {f} ms | {f} %" for f in forms) + " |"
    lines = [head, "|---|" + "---:|" * 3 * len(forms)]
    for op_type in op_types:
        cells = []
        for form in forms:
            p = profiles[form]
            share = 100 * p.seconds.get(op_type, 0.0) / p.total_seconds
            cells.append(f"{p.nodes.get(op_type, 0)} | {p.seconds.get(op_type, 0.0) * 1e3:.3f} | {share:.1f}")
        lines.append(f"| {op_type} | " + " | ".join(cells) + " |")
    summary = {
        "executed (total)": lambda p: f"{sum(p.nodes.values())} | {p.total_seconds * 1e3:.3f} | 100.0",
        "nodes in file": lambda p: f"{p.nodes_in_file} | | ",
    }
    for label, cell in summary.items():
        lines.append(f"| **{label}** | " + " | ".join(cell(profiles[f]) for f in forms) + " |")
    lines.append("| **wall per run** | " + " | ".join(f" | {wall[f]} | " for f in forms) + " |")
    return "\n".join(lines)


def profile_model(name: str, args: argparse.Namespace, workdir: str) -> str:
    model = fuse(timm.create_model(name))
    input_size = (3, args.img_size, args.img_size)
    x = np.random.default_rng(0).standard_normal((args.batch, *input_size), dtype=np.float32)
    profiles, sessions = {}, {}
    for form in args.ska_form:
        path = f"{workdir}/{name}_{form}.onnx"
        check = export_onnx(model, path, input_size, check_batches=(1, args.batch), ska_form=form)
        if not check.passed:
            raise RuntimeError(f"{name} ({form}): the export does not match torch: {check}")
        session = onnxruntime.InferenceSession(path, session_options(args.threads), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        profiles[form] = profile_session(path, feed, args.threads, args.runs, args.warmup, workdir)
        sessions[form] = lambda session=session, feed=feed: session.run(None, feed)
    wall = time_interleaved(sessions, rounds=args.rounds)
    title = f"## {name}, batch {args.batch}, {args.img_size} px, {args.threads} onnxruntime thread(s)"
    note = (f"kernel time per run (mean of {args.runs} profiled runs after {args.warmup} warm-up runs); "
            f"wall: median (min-max) of {args.rounds} interleaved rounds")
    return f"{title}\n\n{note}\n\n{markdown_table(profiles, {f: str(t) for f, t in wall.items()})}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="timm model names, e.g. lsnet_t efficientvit_m4")
    parser.add_argument("--ska-form", nargs="+", choices=SKA_FORMS, default=["reference", "compact"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=50, help="profiled runs per session")
    parser.add_argument("--warmup", type=int, default=5, help="runs before the profiled ones")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the wall-time comparison")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file (e.g. under results/)")
    args = parser.parse_args(argv)
    if min(args.batch, args.threads, args.runs, args.rounds) < 1 or args.warmup < 0:
        parser.error("--batch, --threads, --runs and --rounds must be >= 1 and --warmup >= 0")
    header = (f"# onnxruntime {onnxruntime.__version__} profile, {platform.machine()} {platform.processor() or ''}"
              f"({torch.get_num_threads()} cores for torch), torch {torch.__version__}\n\n"
              f"command: `python benchmarks/ort_profile.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print(header, flush=True)
    sections = [header]
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            sections.append(profile_model(name, args, workdir))
            print(sections[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(sections))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
