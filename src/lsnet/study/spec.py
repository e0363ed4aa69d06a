"""A study file: a YAML matrix of training runs (variants x data subsets x seeds) over one base recipe.

    name: conv2former_kernel             # folder name: runs/studies/<name>/<cell>/
    description: Conv2Former Fig. 4a ...  # free text
    base: {preset: fashion_mnist_cpu, overrides: {img_size: 64, train_subset: 10000}}
    budget: {epochs: 4}                  # the equal budget: every cell trains this many epochs, or per subset:
                                         # {epochs: {1000: 40, 5000: 10, all: 2}} (arms alike on each subset)
    seeds: [0, 1, 2]                     # or a count: 3
    subsets: [1000, 5000, null]          # train_subset sizes (null: the whole training split); default [null]
    reference: k7                        # the arm every other arm is tested against (default: the first variant)
    variants:
      - {label: k7, model: conv2former_test, model_kwargs: {kernel_size: 7}}
      - {label: k21, model: conv2former_test, model_kwargs: {kernel_size: 21}, overrides: {drop_path: 0.1}}
      - {label: big, model: conv2former_n, compare_to: k21}    # tested against k21 instead of the reference
    analysis: {erf: {variants: [k7, k21], images: fashion-mnist, num_images: 32}}   # optional, run by the report;
                                         # erf may also be a list of such blocks (e.g. one per img_size)

Settings of a cell, lowest first: the preset < `quiet: true` < base.overrides < the variant's overrides < what the
study fixes per cell (model, model_kwargs, seed, train_subset, epochs, output, experiment). Cell ids are
`<label>-n<subset or 'all'>-s<seed>`; an arm is a variant on one subset (`<label>-n<subset>`), its seeds are the
repeats.

    from lsnet.study import load_study
    study = load_study("studies/conv2former_kernel.yaml")
    for cell in study.cells():
        print(cell.id, study.train_config(cell))
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Cell", "ErfAnalysis", "Study", "StudyError", "Variant", "load_study"]

DEFAULT_RUNS_DIR = "runs/studies"
STUDY_KEYS = ("name", "description", "base", "budget", "seeds", "subsets", "reference", "variants", "analysis")
BASE_KEYS = ("preset", "overrides")
BUDGET_KEYS = ("epochs",)
VARIANT_KEYS = ("label", "model", "model_kwargs", "overrides", "compare_to")
ANALYSIS_KEYS = ("erf",)
ERF_KEYS = ("variants", "images", "num_images", "img_size", "stage", "mode", "thresholds", "batch_size")
# settings the study fixes for every cell: a recipe override may not set them
CELL_SETTINGS = ("model", "model_kwargs", "seed", "train_subset", "epochs", "output", "experiment", "resume")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class StudyError(ValueError):
    """A study file that cannot run; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Variant:
    """One arm's architecture and recipe: a timm model name, its constructor arguments and TrainConfig overrides."""

    label: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    compare_to: str | None = None  # the arm its t-tests are against (None: the study's reference)


@dataclass(frozen=True)
class Cell:
    """One training run of a study: a variant on a data subset with a seed."""

    variant: Variant
    subset: int | None  # train_subset (None: the whole training split)
    seed: int

    @property
    def arm(self) -> str:
        """The variant on this subset, e.g. 'lsnet_t-n5000' (its cells differ only in the seed)."""
        return f"{self.variant.label}-n{self.subset if self.subset is not None else 'all'}"

    @property
    def id(self) -> str:
        """Stable id and run-folder name, e.g. 'lsnet_t-n5000-s1'."""
        return f"{self.arm}-s{self.seed}"


@dataclass(frozen=True)
class ErfAnalysis:
    """`analysis: erf:` — ERFs of the trained cells' best.pth (lsnet.analysis.erf), aggregated over seeds."""

    variants: tuple[str, ...]
    images: str = "fashion-mnist"
    num_images: int = 32
    img_size: int | None = None  # None: each run's training size
    stage: str = "-1"
    mode: str = "abs"
    thresholds: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
    batch_size: int = 8


@dataclass
class Study:
    """A parsed study file; `cells()` expands the matrix, `train_config(cell)` gives one cell's settings."""

    name: str
    path: Path
    preset: str | None
    base_overrides: dict[str, Any]
    epochs: dict[int | None, int]  # training epochs per subset (the budget; every arm alike)
    seeds: tuple[int, ...]
    subsets: tuple[int | None, ...]
    variants: tuple[Variant, ...]
    reference: str
    description: str = ""
    erfs: tuple[ErfAnalysis, ...] = ()  # `analysis: erf:`, one block or a list of them
    runs_dir: Path = Path(DEFAULT_RUNS_DIR)

    @property
    def root(self) -> Path:
        """Folder of the study's run folders: <runs_dir>/<name>."""
        return self.runs_dir / self.name

    def epochs_for(self, subset: int | None) -> int:
        return self.epochs[subset]

    def budget_text(self) -> str:
        """e.g. '4 epochs per cell' or '40 / 10 / 2 epochs per cell on 1000 / 5000 / all training images'."""
        values = [self.epochs[s] for s in self.subsets]
        if len(set(values)) == 1:
            return f"{values[0]} epochs per cell"
        names = " / ".join(str(s) if s is not None else "all" for s in self.subsets)
        return f"{' / '.join(map(str, values))} epochs per cell on {names} training images"

    def variant(self, label: str) -> Variant:
        return next(v for v in self.variants if v.label == label)

    def reference_of(self, variant: Variant) -> Variant | None:
        """The variant `variant` is tested against (None for the reference itself)."""
        label = variant.compare_to or self.reference
        return None if label == variant.label else self.variant(label)

    def cells(self) -> list[Cell]:
        """Every cell, variant-major, then subset, then seed (the order `lsnet study run` trains them in)."""
        return [Cell(v, subset, seed) for v in self.variants for subset in self.subsets for seed in self.seeds]

    def cell_dir(self, cell: Cell) -> Path:
        return self.root / cell.id

    def train_config(self, cell: Cell) -> dict[str, Any]:
        """The cell's TrainConfig settings (a dict for `lsnet.train.train`), precedence as in the module docstring."""
        from ..train.config import load_preset

        values: dict[str, Any] = dict(load_preset(self.preset), config=self.preset) if self.preset else {}
        values["quiet"] = True
        values.update(self.base_overrides)
        values.update(cell.variant.overrides)
        values.update(model=cell.variant.model, model_kwargs=dict(cell.variant.model_kwargs), seed=cell.seed,
                      train_subset=cell.subset, epochs=self.epochs_for(cell.subset), output=str(self.root),
                      experiment=cell.id)
        return values


# ------------------------------------------------------------------------------------------------------- parsing
def _check_keys(where: str, value: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise StudyError(f"{where} must be a mapping with keys {', '.join(allowed)}; got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StudyError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise StudyError(f"{where}: missing {key!r} (required: {', '.join(required)})")
    return value


def _int_list(where: str, value: Any, allow_none: bool = False, minimum: int = 0) -> tuple:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None and allow_none:
            out.append(None)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= minimum:
            out.append(item)
        else:
            kind = f"integers >= {minimum}" + (" or null (all)" if allow_none else "")
            raise StudyError(f"{where}: expected {kind}; got {item!r}")
    if not out or len(set(out)) != len(out):
        raise StudyError(f"{where}: expected distinct values, at least one; got {value!r}")
    return tuple(out)


def _overrides(where: str, value: Any) -> dict[str, Any]:
    from ..train.config import FIELD_NAMES

    value = value or {}
    if isinstance(value, dict):  # YAML keys as in presets: snake_case, or the flags' kebab-case
        value = {str(k).replace("-", "_"): v for k, v in value.items()}
    value = _check_keys(where, value, FIELD_NAMES)
    fixed = [k for k in value if k in CELL_SETTINGS]
    if fixed:
        raise StudyError(f"{where}: {', '.join(fixed)} cannot be overridden: the study sets "
                         f"{', '.join(CELL_SETTINGS)} per cell (use budget.epochs, seeds, subsets, a variant's "
                         "model / model_kwargs)")
    return dict(value)


def _check_model(where: str, name: Any) -> str:
    import timm

    import lsnet.models  # noqa: F401  (registers the families)

    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise StudyError(f"{where}: unknown model {name!r}; {hint}pick a name from timm.list_models() after "
                         "`import lsnet`")
    return name


def _variant(where: str, value: Any) -> Variant:
    value = _check_keys(where, value, VARIANT_KEYS, required=("label", "model"))
    label = value["label"]
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise StudyError(f"{where}: label {label!r} must be letters, digits, '_', '.', '+' (it names run folders), "
                         "e.g. wo_lkp")
    where = f"{where.rsplit(' ', 1)[0]} {label!r}"
    kwargs = value.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise StudyError(f"{where}: model_kwargs must be a mapping of constructor arguments; got {kwargs!r}")
    return Variant(label, _check_model(where, value["model"]), dict(kwargs),
                   _overrides(f"{where}: overrides", value.get("overrides")), value.get("compare_to"))


def _erf(where: str, value: Any, labels: tuple[str, ...]) -> ErfAnalysis:
    value = dict(_check_keys(where, value, ERF_KEYS, required=("variants",)))
    variants = value["variants"]
    if not isinstance(variants, list) or not variants or any(v not in labels for v in variants):
        raise StudyError(f"{where}: variants must list labels of the study's variants ({', '.join(labels)}); "
                         f"got {variants!r}")
    value["variants"] = tuple(variants)
    if "stage" in value:
        value["stage"] = str(value["stage"])
    if "thresholds" in value:
        value["thresholds"] = tuple(float(t) for t in value["thresholds"])
    return ErfAnalysis(**value)


def _erfs(where: str, value: Any, labels: tuple[str, ...]) -> tuple[ErfAnalysis, ...]:
    """analysis.erf: one block or a list of blocks, no two with the same settings."""
    blocks = value if isinstance(value, list) else [value]
    erfs = tuple(_erf(f"{where}[{i}]" if isinstance(value, list) else where, block, labels)
                 for i, block in enumerate(blocks))
    if len(set(erfs)) < len(erfs):
        raise StudyError(f"{where}: two blocks have the same settings; give each its own img_size, stage, images ...")
    return erfs


def _epochs(where: str, value: Any, subsets: tuple[int | None, ...]) -> dict[int | None, int]:
    """budget.epochs: one count for every subset, or a mapping {subset (or 'all'): count} covering each subset."""
    if not isinstance(value, dict):
        (count,) = _int_list(where, value, minimum=1)
        return dict.fromkeys(subsets, count)
    given = {None if key in ("all", None) else key: count for key, count in value.items()}
    names = ", ".join(str(s) if s is not None else "all" for s in subsets)
    if set(given) != set(subsets):
        raise StudyError(f"{where}: a mapping needs exactly one entry per subset ({names}); got keys "
                         f"{', '.join(map(str, value))}")
    return {s: _int_list(f"{where}[{s if s is not None else 'all'}]", given[s], minimum=1)[0] for s in subsets}


def load_study(path: str | Path, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Study:
    """Parse and check a study file (unknown keys, models, settings and budget are one-line StudyErrors)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {str(path)!r} not found; pass a YAML file such as studies/lsnet_ablations.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    where = str(path)
    data = _check_keys(where, data, STUDY_KEYS, required=("name", "budget", "seeds", "variants"))
    name = data["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StudyError(f"{where}: name {name!r} must be letters, digits, '_', '.', '-' (it names the study folder)")
    base = _check_keys(f"{where}: base", data.get("base") or {}, BASE_KEYS)
    preset = base.get("preset")
    if preset is not None:
        from ..train.config import load_preset
        from ..train.errors import ConfigError

        try:
            load_preset(preset)
        except ConfigError as err:
            raise StudyError(f"{where}: base.preset: {err}") from None
    budget = _check_keys(f"{where}: budget", data["budget"], BUDGET_KEYS, required=BUDGET_KEYS)
    seeds = data["seeds"]
    seeds = tuple(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0 else \
        _int_list(f"{where}: seeds", seeds)
    subsets = _int_list(f"{where}: subsets", data.get("subsets", [None]), allow_none=True, minimum=1)
    epochs = _epochs(f"{where}: budget.epochs", budget["epochs"], subsets)
    if not isinstance(data["variants"], list) or not data["variants"]:
        raise StudyError(f"{where}: variants must be a non-empty list of {{label, model, ...}} mappings")
    variants = tuple(_variant(f"{where}: variant {i + 1}", v) for i, v in enumerate(data["variants"]))
    labels = tuple(v.label for v in variants)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise StudyError(f"{where}: variant labels must be unique; {', '.join(duplicates)} repeat")
    reference = data.get("reference", labels[0])
    if reference not in labels:
        raise StudyError(f"{where}: reference {reference!r} is not a variant label ({', '.join(labels)})")
    for v in variants:
        if v.compare_to is not None and (v.compare_to not in labels or v.compare_to == v.label):
            raise StudyError(f"{where}: variant {v.label!r}: compare_to {v.compare_to!r} must be another variant's "
                             f"label ({', '.join(labels)})")
    analysis = _check_keys(f"{where}: analysis", data.get("analysis") or {}, ANALYSIS_KEYS)
    erfs = _erfs(f"{where}: analysis.erf", analysis["erf"], labels) if "erf" in analysis else ()
    study = Study(name=name, path=path, preset=preset,
                  base_overrides=_overrides(f"{where}: base.overrides", base.get("overrides")), epochs=epochs,
                  seeds=seeds, subsets=subsets, variants=variants, reference=reference,
                  description=str(data.get("description") or "").strip(), erfs=erfs, runs_dir=Path(runs_dir))
    _check_settings(study)
    return study


def _check_settings(study: Study) -> None:
    """Every variant's resolved settings must make a valid TrainConfig (one cell per variant is enough)."""
    from ..train.config import TrainConfig
    from ..train.errors import ConfigError

    for variant in study.variants:
        try:
            TrainConfig.from_any(study.train_config(Cell(variant, study.subsets[0], study.seeds[0])))
        except ConfigError as err:
            raise StudyError(f"{study.path}: variant {variant.label!r}: {err}") from None
