"""Studies: YAML matrices of training runs (variants x data subsets x seeds), run resumably through the training
engine and aggregated into tables, CSVs and plots (`lsnet study run|report|archive STUDY.yaml`).

    from lsnet.study import load_study, run_study, write_report
    study = load_study("studies/lsnet_ablations.yaml")
    run_study(study)                  # skips finished cells, resumes interrupted ones
    write_report(study)               # runs/studies/<name>/report/results.md, arms.csv, cells.csv, *.png
    archive_study(study, "results/studies")   # the finished cells' small files (no checkpoints), to commit
"""
from .report import archive_study, write_report
from .runner import run_study
from .spec import Cell, Study, StudyError, Variant, load_study

__all__ = ["archive_study", "Cell", "Study", "StudyError", "Variant", "load_study", "run_study", "write_report"]
