"""Run parameters: one flat, typed record, read from YAML, validated, written back into each run folder.

Flat on purpose: the same names are the notebooks' papermill parameters and the sweep grid's keys.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence, Union, get_args, get_origin, get_type_hints

import yaml


@dataclass
class RunParams:
    """Everything that defines a run; the same params give the same numbers."""

    name: str = "run"  # run folder name under runs_dir
    runs_dir: str = "runs"  # parent folder of run folders
    # data
    # "synth:<preset>", a registered dataset name, a folder with formulas/properties[/materials] tables (csv, parquet,
    # xlsx), a workbook (.xlsx) with those sheets, or (layout: wide) one wide sheet or table
    data: str = "synth:small"
    data_seed: int = 0  # seed of the synthetic lab
    target: Optional[str] = None  # property column to learn (default: the data set's first)
    # unit of the target in reports and summaries (e.g. cP); "" = the unit in the target's header ("viscosity [cP]",
    # "viscosity (cP)"), else the bundled data set's unit
    target_unit: str = ""
    conditions: list = field(default_factory=list)  # condition columns fed to the regressor (e.g. [T, P])
    inverse_conditions: list = field(default_factory=list)  # conditions entered as 1000 / value (e.g. [T])
    content_unit: str = "auto"  # percent | fraction | auto
    # reading the data files (mrl.data.load_formulas, mrl.workbook)
    layout: str = "long"  # long (formulas/properties/materials tables) | wide (one row per formula, a column per material)
    sheets: dict = field(default_factory=dict)  # workbook sheet of each table, e.g. {formulas: Rezepturen}
    sheet: Optional[str] = None  # the wide sheet of a workbook (default: 'formulas', else the only sheet)
    id_column: str = "formula_id"  # wide layout: the column naming each formula
    material_columns: list = field(default_factory=list)  # wide layout: a range [B:K] or headers (default: all numeric)
    ignore_columns: list = field(default_factory=list)  # wide layout: columns that are not materials (notes, pH...)
    sep: Optional[str] = None  # CSV separator (default: detected)
    decimal: Optional[str] = None  # decimal mark of CSV files and numbers stored as text (default: detected)
    below_limit: str = "error"  # a cell '<0.1': error | half (0.05) | zero | limit (0.1)
    text_values: dict = field(default_factory=dict)  # text cells read as numbers, e.g. {tr: 0.01, n.d.: 0}
    duplicates: str = "error"  # a material listed twice in a formula: error | sum
    # split
    # random (by formula) | column (the data's split column) | group (by the group column) | material (by material)
    split: str = "random"
    eval_fraction: float = 0.2  # share of formulas (or groups, or materials) held out for eval
    split_seed: int = 0
    # inner share of the training formulas held out to calibrate intervals and domain flags (never eval/test)
    calibration_fraction: float = 0.1
    ensemble: int = 1  # members trained from different seeds; prediction = their mean, intervals from their spread
    # also fit classical baselines (mean, ridge and LightGBM on contents; with features, trees on content-weighted
    # features) on the same split: baselines.json and a line of the train summary (mrl.run_baselines)
    baselines: bool = True
    # stacking: mrl learns the residual of a ridge or LightGBM model on the contents (fitted on the training formulas,
    # out-of-fold for the rows the net trains on); none | ridge | lightgbm | auto (the one with the lower out-of-fold
    # error, none when neither beats the mean); mrl.stacking
    stack: str = "none"
    # size-dependent defaults (mrl.small_data): auto (on below SMALL_DATA_MAX_FORMULAS training formulas) | on | off;
    # on sets the small-data settings (e.g. stack: auto) on keys left at their default; the plan logs the choice
    small_data: str = "auto"
    # model
    embedding_dim: int = 8
    activation: str = "tanh"  # tanh | none, applied to the raw material table
    hidden: list = field(default_factory=lambda: [128, 128])  # head MLP widths
    dropout: float = 0.0
    head: str = "direct"  # direct | vft (needs a temperature condition)
    temperature: str = "T"  # which condition is the temperature (vft head)
    content_scale: str = "median"  # none | median | rms | learned: per-material content scaling
    pin_origin: Optional[str] = "auto"  # material pinned at the origin: an id, "auto" (largest total content) or null
    pin: list = field(default_factory=list)  # further materials fixed at the origin (known to have no influence)
    tie: dict = field(default_factory=dict)  # {material: known material}: it shares that material's vector
    init_std: float = 0.001  # all vectors start this close to the origin
    target_transform: str = "auto"  # none | log10 | auto (log10 when positive and spanning > 2 decades)
    aggregation: str = "embedding_bag"  # embedding_bag | sparse_mm
    # none | attention (one content-weighted attention layer, Roost-like) | transformer (interaction_layers layers
    # of it with residuals, layer norm and a fractional encoding of the amount, CrabNet-like): ingredients update
    # each other before the sum; the material table stays the inspectable vectors
    interaction: str = "none"
    interaction_layers: int = 3  # transformer layers (interaction: transformer)
    interaction_heads: int = 4  # attention heads per transformer layer, a divisor of interaction_width
    interaction_width: int = 64  # width of the transformer layers
    # how the transformer's layers mix ingredients: attention (content-weighted softmax over partners, padded per
    # length bucket) | pooling (content-weighted mean of the partners' messages: no padding, linear cost)
    interaction_mixing: str = "attention"
    # known material features beside the learned vectors: null | columns (numeric columns of the materials table) |
    # magpie | mat2vec | oliynyk | jarvis (element tables; material id = element symbol) | rdkit (smiles column) |
    # supplier (sheet_* columns, e.g. a synthetic lab's supplier sheets) | graph (a message-passing network over each
    # material's molecular graph from its smiles, trained end to end; mrl.graph); raw vector = g(features) + residual
    features: Optional[str] = None
    feature_map: str = "linear"  # linear | mlp (one hidden layer of 64): the map g from features to raw vectors
    # training
    # an int, or "auto" (the default of `mrl train`): find the best step on an inner validation share of the training
    # formulas (validation_fraction; never eval) over a budget that grows with the data, mrl.train.resolve_steps,
    # then train on all training formulas up to that step (auto_refit)
    # (the lab sweeps and benchmarks keep fixed steps in their own params files)
    steps: Union[int, str] = "auto"
    batch_size: int = 256
    lr: float = 0.003  # head learning rate
    embedding_lr: Optional[float] = None  # material-table learning rate (default: lr)
    weight_decay: float = 0.0  # L2 on the head's weights
    embedding_weight_decay: float = 0.0001  # L2 on the material table: pulls data-poor materials to the origin
    # with features: L2 on the per-material residual (the table), pulling data-poor materials to g(features);
    # embedding_weight_decay then acts on g (and learned content scales)
    residual_weight_decay: float = 0.001
    lr_schedule: str = "cosine"  # cosine | constant
    loss: str = "mse"  # mse | l1 | huber, on the standardised (transformed) target
    eval_every: int = 500
    # hold out validation_fraction of the training formulas (by formula, seeded by seed), check the validation loss
    # every eval_every steps, stop after patience checks without improvement and keep the best state (never eval)
    early_stopping: bool = False
    validation_fraction: float = 0.1
    patience: int = 10  # evaluations without a lower validation loss before stopping (early_stopping only)
    # what early stopping and steps: auto minimise on the validation share: mae (mean absolute error of the
    # standardised transformed target: the argmin of the MAE the metrics report, log10 MAE for a log target) | loss
    # (the training loss, e.g. MSE: the criterion of earlier versions; runs made with it, e.g. the seed-scale sweep of
    # params/lab_seed_scale.yaml, need validation_metric: loss to be repeated exactly). mrl.train.VALIDATION_METRICS
    validation_metric: str = "mae"
    # steps: auto: after the best step is found on the validation share, train again on all training formulas over
    # the same schedule and stop at that step (the validation share is not lost to the final model; ~1.5x the time);
    # false: keep the best state of the run with the validation share held out. mrl.estimator.MixtureRegressor.fit
    auto_refit: bool = True
    snapshot_every: int = 500  # material vectors recorded every this many steps
    checkpoint_every: int = 2000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def to_dict(self) -> dict[str, Any]:
        """All parameters as a plain dict (what params.yaml holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        """Names of all parameters, in declaration order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "params") -> "RunParams":
        """Build from a mapping, rejecting unknown names and wrong types with a message naming the key."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"{source}: unknown parameter(s) {unknown}; valid: {cls.names()}")
        hints = get_type_hints(cls)
        clean = {}
        for key, value in values.items():
            clean[key] = _check_type(key, value, hints[key], source)
        params = cls(**clean)
        params.validate(source)
        return params

    def validate(self, source: str = "params") -> None:
        """Check value ranges and choices (the table :data:`CONSTRAINTS`, shared with the estimator)."""
        check_constraints(self.to_dict(), source)
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(f"{source}: calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}")
        if self.ensemble < 1:
            raise ValueError(f"{source}: ensemble must be >= 1, got {self.ensemble!r}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"{source}: eval_fraction must be in (0, 1), got {self.eval_fraction!r}")
        check_conditions(self.inverse_conditions, self.head, self.temperature, self.conditions, source)


#: Allowed values of the choice parameters; the estimator (:class:`mrl.estimator.MixtureRegressor`) and
#: :class:`RunParams` both check against this one table.
CHOICES: dict[str, tuple] = {
    "split": ("random", "column", "group", "material"),
    "content_unit": ("auto", "percent", "fraction"),
    "layout": ("long", "wide"),
    "decimal": (None, ".", ","),
    "below_limit": ("error", "half", "zero", "limit"),
    "duplicates": ("error", "sum"),
    "activation": ("tanh", "none"),
    "head": ("direct", "vft"),
    "content_scale": ("none", "median", "rms", "learned"),
    "target_transform": ("none", "log10", "auto"),
    "aggregation": ("embedding_bag", "sparse_mm"),
    "interaction": ("none", "attention", "transformer"),
    "interaction_mixing": ("attention", "pooling"),
    # graph: a message-passing network over each material's molecular graph from its smiles (mrl.graph, chemprop)
    "features": (None, "columns", "magpie", "mat2vec", "oliynyk", "jarvis", "rdkit", "supplier", "graph"),
    "feature_map": ("linear", "mlp"),
    "lr_schedule": ("cosine", "constant"),
    "loss": ("mse", "l1", "huber"),
    "validation_metric": ("mae", "loss"),
    "unknown": ("error", "zero"),
    "stack": ("none", "ridge", "lightgbm", "auto"),
    "small_data": ("auto", "on", "off"),
}
#: List parameters that may be given as one string (``--set material_columns=B:K``).
STRING_LISTS = ("material_columns", "ignore_columns", "conditions")
#: Parameters that must be > 0 (``None`` allowed where the parameter is optional).
POSITIVE = ("embedding_dim", "interaction_layers", "interaction_heads", "interaction_width", "batch_size",
            "eval_every", "snapshot_every", "checkpoint_every", "lr",
            "embedding_lr", "patience")
#: Parameters that must be >= 0.
NON_NEGATIVE = ("dropout", "weight_decay", "embedding_weight_decay", "init_std", "residual_weight_decay")


def check_constraints(values: dict[str, Any], source: str = "params") -> None:
    """Raise ValueError naming the key for any value of ``values`` outside :data:`CHOICES`, :data:`POSITIVE`
    or :data:`NON_NEGATIVE`; keys absent from ``values`` are not checked."""
    for key, allowed in CHOICES.items():
        if key in values and values[key] not in allowed:
            raise ValueError(f"{source}: {key} must be one of {allowed}, got {values[key]!r}")
    for key in POSITIVE:
        if values.get(key) is not None and not values[key] > 0:
            raise ValueError(f"{source}: {key} must be > 0, got {values[key]!r}")
    for key in NON_NEGATIVE:
        if values.get(key) is not None and not values[key] >= 0:
            raise ValueError(f"{source}: {key} must be >= 0, got {values[key]!r}")
    if values.get("dropout") is not None and not values["dropout"] < 1:
        raise ValueError(f"{source}: dropout must be < 1, got {values['dropout']!r}")
    if values.get("validation_fraction") is not None and not 0 < values["validation_fraction"] < 1:
        raise ValueError(f"{source}: validation_fraction must be in (0, 1), got {values['validation_fraction']!r}")
    for key in ("early_stopping", "baselines", "auto_refit"):
        if key in values and not isinstance(values[key], bool):
            raise ValueError(f"{source}: {key} must be true or false, got {values[key]!r}")
    if "steps" in values:
        check_steps(values["steps"], source)
    if values.get("device") is not None:
        check_device_name(values["device"], source)


def check_conditions(inverse_conditions: Sequence[str], head: str, temperature: str, conditions: Sequence[str],
                     source: str = "params") -> None:
    """The condition parameters against the conditions a run (or data set) has: every inverse condition is one of
    them, and the ``vft`` head's temperature is one of them."""
    bad = [c for c in inverse_conditions if c not in conditions]
    if bad:
        raise ValueError(f"{source}: inverse_conditions {bad} are not among the conditions {list(conditions)}")
    if head == "vft" and temperature not in conditions:
        raise ValueError(f"{source}: head 'vft' needs the temperature condition {temperature!r} among the "
                         f"conditions {list(conditions)}")


def check_steps(steps: Any, source: str = "params") -> None:
    """``steps`` is a positive integer or ``"auto"``; anything else is an error naming ``source``."""
    if steps == "auto":
        return
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{source}: steps must be a positive integer or 'auto', got {steps!r}")


def check_device_name(device: str, source: str = "params") -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; anything else is an error naming ``source``."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(device)):
        raise ValueError(f"{source}: device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")


def _check_type(key: str, value: Any, hint: Any, source: str) -> Any:
    if get_origin(hint) is Union and type(None) not in get_args(hint):  # steps: int or "auto"
        if isinstance(value, str) and int in get_args(hint):  # YAML 1.1 reads 1e4 (no dot) as a string
            try:
                value = int(float(value)) if float(value).is_integer() else value
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, get_args(hint)):
            names = " or ".join(t.__name__ for t in get_args(hint))
            raise TypeError(f"{source}: {key} must be {names}, got {type(value).__name__} {value!r}")
        return value
    optional = get_origin(hint) is not None and type(None) in get_args(hint)
    base = next((a for a in get_args(hint) if a is not type(None)), hint) if optional else hint
    if value is None:
        if optional:
            return None
        raise TypeError(f"{source}: {key} must not be null")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base in (float, int) and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return base(float(value)) if base is float or float(value).is_integer() else value
        except ValueError:
            pass
    if base is str and isinstance(value, bool) and {"on", "off"} <= set(CHOICES.get(key, ())):
        return "on" if value else "off"  # YAML 1.1 reads on / off (unquoted) as true / false
    if base is list and isinstance(value, tuple):
        return list(value)
    if base is list and isinstance(value, str) and key in STRING_LISTS:  # material_columns: B:K
        return [value]
    if base is int and isinstance(value, bool) or not isinstance(value, base):
        raise TypeError(f"{source}: {key} must be {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def load_params(path: str | Path, **overrides: Any) -> RunParams:
    """Read a params YAML file (a mapping of RunParams names) and apply overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}:{where}: not valid YAML ({problem})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    values.pop("provenance", None)  # a run folder's params.yaml can be reused as a params file
    values.update(overrides)
    return RunParams.from_dict(values, source=str(path))
