"""`lsnet study`: run a study file's matrix of training runs (variants x subsets x seeds) and report on it.

    lsnet study run studies/lsnet_ablations.yaml --dry-run        # the cells, their state and commands
    lsnet study run studies/lsnet_ablations.yaml                  # train what is not finished (resumable)
    lsnet study run studies/lsnet_ablations.yaml --only 'wo_lkp-*'
    lsnet study report studies/lsnet_ablations.yaml               # runs/studies/<name>/report/results.md, CSV, plots
    lsnet study archive studies/lsnet_ablations.yaml --to results/studies   # finished cells' small files, to commit
    lsnet study report studies/lsnet_ablations.yaml --runs-dir results/studies   # the same tables from the archive

Run folders: <runs-dir>/<study name>/<cell id>/ (cell id = <label>-n<subset>-s<seed>). A finished cell (eval.json)
is skipped, an interrupted one resumes from its last.pth; stop with Ctrl-C and run the same command again.
"""
from __future__ import annotations

import argparse

from lsnet.study.spec import DEFAULT_RUNS_DIR


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("study", help="run a study (training matrix) and aggregate its results",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="train the study's unfinished cells, one process at a time")
    run.add_argument("study", help="study YAML file, e.g. studies/lsnet_ablations.yaml")
    run.add_argument("--dry-run", action="store_true", help="list the cells, their state and commands; train nothing")
    run.add_argument("--only", metavar="CELL-GLOB", help="only the cells whose id matches, e.g. 'lsnet_t-*' or '*-s0'")
    run.add_argument("--in-process", action="store_true",
                     help="train in this process instead of one `lsnet train` process per cell")
    report = actions.add_parser("report", help="aggregate finished cells: markdown table, CSVs, plots")
    report.add_argument("study", help="study YAML file")
    report.add_argument("--output", default=None, help="report folder (default: <runs-dir>/<name>/report)")
    report.add_argument("--no-plots", action="store_true", help="tables and CSVs only")
    archive = actions.add_parser("archive", help="copy finished cells' small files (no checkpoints) to a folder")
    archive.add_argument("study", help="study YAML file")
    archive.add_argument("--to", required=True, metavar="DIR",
                         help="destination; cells go to DIR/<study name>/<cell id>/ (e.g. results/studies)")
    for sub in (run, report, archive):
        sub.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR,
                         help=f"folder holding the studies' run folders (default: {DEFAULT_RUNS_DIR})")
    return parser


def run(args: argparse.Namespace) -> int:
    from lsnet.study import archive_study, load_study, run_study, write_report

    study = load_study(args.study, runs_dir=args.runs_dir)
    if args.action == "run":
        try:
            run_study(study, only=args.only, dry_run=args.dry_run, in_process=args.in_process)
        except KeyboardInterrupt:
            print(f"interrupted; run `lsnet study run {args.study}` again to resume")
            return 130
        return 0
    if args.action == "archive":
        folders = archive_study(study, args.to)
        print(f"archived {len(folders)} finished cells of {study.name} to {args.to}/{study.name}")
        return 0
    paths = write_report(study, args.output, plots=not args.no_plots)
    print(paths["markdown"].read_text(), end="")
    for path in paths.values():
        print(f"wrote {path}")
    return 0
