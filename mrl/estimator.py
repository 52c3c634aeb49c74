"""A scikit-learn-style estimator around :class:`mrl.model.MixtureModel`.

``__init__`` stores its arguments unchanged; ``fit`` validates, resolves ``"auto"`` values into fitted attributes
(names ending in ``_``) and returns ``self``; ``predict`` returns property units, shape ``(n_samples,)``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

import mrl
from mrl.checkpoint import (
    load_checkpoint,
    load_snapshots,
    save_checkpoint,
)
from mrl.data import FormulaData, content_matrix, material_rows, prediction_input
from mrl.features import GRAPH, FeatureScaler, material_features
from mrl.graph import material_smiles
from mrl.init_vectors import set_initial_table
from mrl.metrics import regression_metrics
from mrl.model import PREDICTION_MARGIN, MixtureModel, make_batch
from mrl.params import RunParams, check_conditions, check_constraints
from mrl.run_files import snapshots_path
from mrl.splits import validation_split
from mrl.stacking import StackBase, fit_stack, refit_stack
from mrl.tables import DataError
from mrl.train import LOSSES, VALIDATION_METRICS, LoopConfig, resolve_device, resolve_steps, run_loop
from mrl.transforms import resolve_target_transform

log = logging.getLogger(__name__)
#: The one table of defaults (:class:`mrl.params.RunParams`): the estimator's keyword defaults are read from it.
_DEFAULTS = RunParams()
#: Rows per forward pass when predicting.
PREDICT_CHUNK = 8192


class MixtureRegressor(RegressorMixin, BaseEstimator):
    """Learn one vector per material and a regressor on the content-weighted sum (plus conditions).

    A scikit-learn estimator: ``__init__`` stores its arguments unchanged, ``get_params``/``set_params``/
    :func:`sklearn.base.clone` work, and ``fit`` checks them against :data:`mrl.params.CHOICES` (the table
    :class:`mrl.params.RunParams` uses too). Parameters mirror the model and training sections of ``RunParams``
    (whose defaults are this signature's: one table of defaults). ``unknown`` says what ``predict`` does with a material absent from the
    training vocabulary: ``"error"`` or ``"zero"`` (treat it as a material with no influence).

    ``features`` (see :mod:`mrl.features`) adds known material features: each raw vector becomes ``g(x_i) + r_i``
    (:class:`mrl.model.MixtureModel`), the residual table pulled to 0 by ``residual_weight_decay`` so that a
    data-poor material leans on ``g(x_i)``. ``early_stopping`` holds out ``validation_fraction`` of the training
    formulas, checks their MAE (``validation_metric="mae"``; ``"loss"``: the training loss) every ``eval_every``
    steps, stops after ``patience`` checks without improvement
    and keeps the best state (``best_step_``, ``stopped_step_``); ``eval_data`` is only ever monitored.
    ``steps="auto"`` does the same over a budget that grows with the data, never stopped before its end
    (:func:`mrl.train.resolve_steps`; the budget in ``steps_``), then, with ``auto_refit``, trains again on all
    training formulas over the same schedule up to the best step. ``stack`` (:mod:`mrl.stacking`) makes the network
    learn the residual of a ridge or LightGBM base on the contents (``stack_``); predictions are base + network.
    """

    def __init__(self, embedding_dim: int = _DEFAULTS.embedding_dim, activation: str = _DEFAULTS.activation,
                 hidden: Sequence[int] = tuple(_DEFAULTS.hidden), dropout: float = _DEFAULTS.dropout,
                 head: str = _DEFAULTS.head, temperature: str = _DEFAULTS.temperature,
                 content_scale: str = _DEFAULTS.content_scale, pin_origin: str | None = _DEFAULTS.pin_origin,
                 pin: Sequence[str] = tuple(_DEFAULTS.pin), tie: Mapping[str, str] | None = None,
                 init_std: float = _DEFAULTS.init_std, target_transform: str = _DEFAULTS.target_transform,
                 aggregation: str = _DEFAULTS.aggregation, interaction: str = _DEFAULTS.interaction,
                 interaction_layers: int = _DEFAULTS.interaction_layers,
                 interaction_heads: int = _DEFAULTS.interaction_heads,
                 interaction_width: int = _DEFAULTS.interaction_width,
                 interaction_mixing: str = _DEFAULTS.interaction_mixing,
                 features: str | None = _DEFAULTS.features, feature_map: str = _DEFAULTS.feature_map,
                 inverse_conditions: Sequence[str] = tuple(_DEFAULTS.inverse_conditions),
                 steps: int | str = _DEFAULTS.steps, batch_size: int = _DEFAULTS.batch_size, lr: float = _DEFAULTS.lr,
                 embedding_lr: float | None = _DEFAULTS.embedding_lr, weight_decay: float = _DEFAULTS.weight_decay,
                 embedding_weight_decay: float = _DEFAULTS.embedding_weight_decay,
                 residual_weight_decay: float = _DEFAULTS.residual_weight_decay,
                 lr_schedule: str = _DEFAULTS.lr_schedule, loss: str = _DEFAULTS.loss,
                 eval_every: int = _DEFAULTS.eval_every, early_stopping: bool = _DEFAULTS.early_stopping,
                 validation_fraction: float = _DEFAULTS.validation_fraction, patience: int = _DEFAULTS.patience,
                 validation_metric: str = _DEFAULTS.validation_metric, auto_refit: bool = _DEFAULTS.auto_refit,
                 snapshot_every: int = _DEFAULTS.snapshot_every, checkpoint_every: int = _DEFAULTS.checkpoint_every,
                 seed: int = _DEFAULTS.seed, device: str = _DEFAULTS.device, stack: str = _DEFAULTS.stack,
                 unknown: str = "error", progress: bool = True) -> None:
        self.embedding_dim = embedding_dim
        self.activation = activation
        self.hidden = hidden
        self.dropout = dropout
        self.head = head
        self.temperature = temperature
        self.content_scale = content_scale
        self.pin_origin = pin_origin
        self.pin = pin
        self.tie = tie
        self.init_std = init_std
        self.target_transform = target_transform
        self.aggregation = aggregation
        self.interaction = interaction
        self.interaction_layers = interaction_layers
        self.interaction_heads = interaction_heads
        self.interaction_width = interaction_width
        self.interaction_mixing = interaction_mixing
        self.features = features
        self.feature_map = feature_map
        self.inverse_conditions = inverse_conditions
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.embedding_lr = embedding_lr
        self.weight_decay = weight_decay
        self.embedding_weight_decay = embedding_weight_decay
        self.residual_weight_decay = residual_weight_decay
        self.lr_schedule = lr_schedule
        self.loss = loss
        self.eval_every = eval_every
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.validation_metric = validation_metric
        self.auto_refit = auto_refit
        self.snapshot_every = snapshot_every
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.device = device
        self.stack = stack
        self.unknown = unknown
        self.progress = progress

    @classmethod
    def from_params(cls, params: "mrl.params.RunParams", **kw) -> "MixtureRegressor":
        """Build from run params (the keys of this estimator's signature)."""
        values = params.to_dict()
        return cls(**{k: values[k] for k in cls._get_param_names() if k in values}, **kw)

    def _validate_params(self) -> None:
        """Check every parameter against the one constraint table shared with :class:`~mrl.params.RunParams`."""
        params = self.get_params()
        check_constraints(params, source=type(self).__name__)
        bad = [k for k in ("batch_size", "embedding_dim", "interaction_layers", "interaction_heads",
                           "interaction_width", "eval_every", "snapshot_every",
                           "checkpoint_every", "seed", "patience")
               if isinstance(params[k], bool) or not isinstance(params[k], int)]
        if bad:
            raise TypeError(f"{type(self).__name__}: {bad} must be integers")

    # ------------------------------------------------------------------ fit
    def _resolve_pin(self, data: FormulaData) -> list[int]:
        """Rows fixed at the origin: the base (``pin_origin``; ``"auto"``: :meth:`FormulaData.base_material`)
        and ``pin``."""
        base = [] if self.pin_origin is None else [
            data.base_material() if self.pin_origin == "auto" else self.pin_origin]
        rows = material_rows(data.material_ids, base, "pin_origin").tolist()
        return sorted(set(rows + material_rows(data.material_ids, list(self.pin), "pin").tolist()))

    def _resolve_ties(self, data: FormulaData) -> list[int] | None:
        """``tie`` ({material: known material}) as each row's source row, or None without ties."""
        if not self.tie:
            return None
        tie = dict(self.tie)
        bad = [f"{a} -> {b}" for a, b in tie.items() if a == b or b in tie]
        if bad:
            raise ValueError(f"tie: {bad}: tie each material straight to a material that is not tied itself")
        source = np.arange(data.n_materials)
        source[material_rows(data.material_ids, list(tie), "tie")] = material_rows(data.material_ids,
                                                                                  list(tie.values()), "tie")
        return source.tolist()

    def typical_content(self, data: FormulaData) -> np.ndarray:
        """Typical content of each material over the *training* formulas: median, or root mean square for
        ``content_scale="rms"`` (1.0, i.e. no scaling, where unused)."""
        content = data.formulas.groupby("material_id")["content"]
        typical = (content.apply(lambda c: float(np.sqrt(np.mean(np.square(c))))) if self.content_scale == "rms"
                   else content.median())
        return self.materials_["material_id"].map(typical).fillna(1.0).to_numpy(np.float64)

    def fit(self, data: FormulaData, eval_data: FormulaData | None = None,
            checkpoint_path: str | Path | None = None, resume: bool = False,
            initial_table: np.ndarray | None = None) -> "MixtureRegressor":
        """Train on ``data`` (its materials table is the vocabulary); ``eval_data`` is only monitored.

        ``initial_table`` (``n_materials x embedding_dim`` raw values, e.g. from
        :func:`mrl.init_vectors.initial_table`) replaces the near-origin start of the material table (with
        ``features``: of the residual table).

        With ``early_stopping`` the model trains on ``data`` less its validation part (:meth:`validation_split`),
        so its scalers, usage counts and content scales come from that part. ``steps="auto"`` with ``auto_refit``
        first finds the best step that way (a copy of this estimator: no eval, no checkpoint), then trains on all of
        ``data`` over the same schedule (``steps_`` long) and stops at that step (``best_step_``).
        """
        self._validate_params()
        if data.n_samples == 0:
            raise ValueError("fit: no training samples")
        refit = None
        if self.steps == "auto" and self.auto_refit:
            probe = clone(self).set_params(auto_refit=False)
            probe.fit(data, initial_table=initial_table)  # the choice: the validation share only, never eval
            refit = (max(1, int(probe.best_step_ or 0)), int(probe.steps_))
            log.info("%s: steps auto: best validation check at step %d of %d (%s); trained again on all %d training "
                     "samples over the same schedule, stopped at that step", data.name, refit[0], refit[1],
                     f"{probe.wall_s_:.0f} s", data.n_samples)
        return self._fit(data, eval_data, checkpoint_path, resume, initial_table, refit)

    def _fit(self, data: FormulaData, eval_data: FormulaData | None, checkpoint_path: str | Path | None,
             resume: bool, initial_table: np.ndarray | None, refit: tuple[int, int] | None) -> "MixtureRegressor":
        """One training run (see :meth:`fit`); ``refit``: ``(stop step, schedule length)`` of steps: auto's second
        run, on all of ``data`` without a validation share."""
        val_data, full = None, data
        if refit is None and (self.early_stopping or self.steps == "auto"):
            data, val_data = self.validation_split(data)
        self.target_ = data.targets[0]
        self.conditions_ = list(data.conditions)
        check_conditions(self.inverse_conditions, self.head, self.temperature, self.conditions_, data.name)
        self.materials_ = data.materials.reset_index(drop=True).copy()
        y = data.target_values(self.target_).copy()
        self.target_transform_, reason = resolve_target_transform(
            y, self.target_transform, labels=[f"formula {f}" for f in data.properties["formula_id"]],
            what=f"{data.name}: target {self.target_!r}")
        log.info("%s: target %r, %s", data.name, self.target_, reason)
        self.pinned_ = self._resolve_pin(data)
        self.tied_to_ = self._resolve_ties(data)
        if self.tied_to_ is not None:
            self.materials_["tied_to"] = self.materials_["material_id"].map(dict(self.tie))
        self.device_ = resolve_device(self.device)
        features = self._fit_features()
        with torch.random.fork_rng(devices=[]):  # seeded initial vectors and head; the caller's RNG untouched
            torch.manual_seed(self.seed)
            module = self._build_module(data, initial_table, features)
        conditions = data.condition_values()
        inverse = [c in self.inverse_conditions for c in self.conditions_]
        y_net, net_transform = self._fit_stack(data, y, conditions, inverse, features)
        module.fit_scalers(y_net, conditions, net_transform, inverse)
        self.module_ = module.to(self.device_)
        y_scaled = module.target_to_scaled(torch.as_tensor(y_net, dtype=torch.float32, device=self.device_))
        if refit is None:
            plan = resolve_steps(self.steps, data.n_samples, self.batch_size, self.eval_every, self.early_stopping,
                                 self.patience)
            self.steps_ = plan.steps
            log.info("%s: %s", data.name, plan.reason)
            cfg = LoopConfig.from_params({**self.get_params(), "steps": plan.steps, "eval_every": plan.eval_every,
                                          "early_stopping": plan.early_stopping, "patience": plan.patience})
        else:
            self.steps_ = refit[1]
            cfg = LoopConfig.from_params({**self.get_params(), "steps": refit[0], "schedule_steps": refit[1],
                                          "early_stopping": False})
        evaluate = self._monitor(data, eval_data)
        matrix = data.content_matrix()
        state = run_loop(self.module_, matrix, data.sample_rows(), conditions, y_scaled.cpu().numpy(), cfg,
                         self.device_, evaluate=evaluate,
                         checkpoint_path=Path(checkpoint_path) if checkpoint_path else None, resume=resume,
                         estimator_state=self._checkpoint_state(), progress=self.progress,
                         validate=self._validation_loss(val_data))
        if self.stack_ is not None and val_data is not None:  # the base's final fit sees every training formula
            self.stack_ = refit_stack(self.stack_, *self.encode(full), self._transformed(full), self.seed,
                                      self.stack_feature_rows())
            log.info("%s: stack base %s refitted on all %d training samples (validation share included)", full.name,
                     self.stack_.kind, full.n_samples)
            if checkpoint_path:  # the checkpoint (what mrl predict reads) holds the refitted base
                self._rewrite_checkpoint(checkpoint_path)
        if refit is not None and checkpoint_path:  # finished: the chosen step and the stop, as a stopped run says
            self._rewrite_checkpoint(checkpoint_path, best_step=refit[0], stopped_step=state.step)
        self.n_steps_ = state.step
        self.history_ = pd.DataFrame(state.history)
        self.snapshots_ = state.snapshots
        self.wall_s_ = state.wall_s
        self.best_step_ = state.best_step if refit is None else refit[0]
        self.stopped_step_ = state.stopped_step if refit is None else state.step
        return self

    def _rewrite_checkpoint(self, checkpoint_path: str | Path, **progress: Any) -> None:
        """Save the model and estimator state into the loop's final checkpoint again, its ``progress`` updated with
        ``progress`` (its training section kept)."""
        ckpt = load_checkpoint(checkpoint_path)
        save_checkpoint(checkpoint_path, self.module_, self._checkpoint_state(), progress={**ckpt["progress"], **progress},
                        training=ckpt["training"])

    def _fit_stack(self, data: FormulaData, y: np.ndarray, conditions: np.ndarray, inverse: list[bool],
                   features: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        """Fit the ``stack`` base (:mod:`mrl.stacking`) on the training rows and return what the network learns:
        ``(targets, its transform)``, the residual of the base's out-of-fold predictions in transformed units (no
        further transform) with a base, else ``(y, target_transform_)``. Sets ``stack_`` and ``target_range_``.
        ``features``: the standardised feature rows of the vocabulary (the base reads their content-weighted sum)."""
        t = self._transformed(data)
        margin = PREDICTION_MARGIN * float(t.max() - t.min())
        self.target_range_ = (float(t.min()) - margin, float(t.max()) + margin)
        matrix = data.content_matrix()[data.sample_rows()]  # the training data's materials are the vocabulary
        self.stack_, oof, reason = fit_stack(self.stack, matrix, conditions, inverse, t,
                                             data.properties["formula_id"].to_numpy(), self.seed,
                                             None if features is None else features.astype(np.float32))
        log.info("%s: %s", data.name, reason)
        if self.stack_ is None:
            return y, self.target_transform_
        return t - oof, "none"

    def _transformed(self, data: FormulaData) -> np.ndarray:
        """The target of ``data`` in model units (log10 for a log10 transform)."""
        y = np.asarray(data.target_values(self.target_), np.float64)
        return np.log10(y) if self.target_transform_ == "log10" else y

    def network_target(self, y: np.ndarray, matrix: sp.csr_matrix, conditions: np.ndarray) -> np.ndarray:
        """What the network learns for targets ``y`` (property units) of rows of a content matrix in vocabulary
        order: ``y`` itself, or with a ``stack`` base the residual of its prediction in transformed units."""
        y = np.asarray(y, np.float64)
        if getattr(self, "stack_", None) is None:
            return y
        t = np.log10(y) if self.target_transform_ == "log10" else y
        return t - self.stack_.predict(matrix, conditions, self.stack_feature_rows())

    def stack_feature_rows(self) -> np.ndarray | None:
        """The standardised feature rows of the vocabulary (new materials included) that a ``stack`` base with
        features reads, or None (no base, or a base on contents and conditions only)."""
        stack = getattr(self, "stack_", None)
        if stack is None or not stack.n_features:
            return None
        return self.module_.features.detach().cpu().numpy().astype(np.float64)

    def validation_split(self, data: FormulaData) -> tuple[FormulaData, FormulaData]:
        """``(train part, validation part)`` of training data for early stopping (:func:`mrl.splits.validation_split`
        with ``validation_fraction`` and ``seed``)."""
        train, val = validation_split(data, self.validation_fraction, self.seed)
        log.info("%s: early stopping on %d validation formulas (%d measurements) held out of training, criterion: "
                 "%s", data.name, val.properties["formula_id"].nunique(), len(val.properties),
                 "their MAE (standardised target)" if self.validation_metric == "mae" else f"the {self.loss} loss")
        return train, val

    def _validation_loss(self, val_data: FormulaData | None) -> Callable[[MixtureModel], float] | None:
        """What early stopping minimises on the validation part (standardised target; ``validation_metric``: its
        MAE, or the training loss), or None without early stopping."""
        if val_data is None:
            return None
        matrix, cond = self.encode(val_data)
        # a writable copy; with a stack base its residual, as the network learns it
        y_val = self.network_target(val_data.target_values(self.target_), matrix, cond).astype(np.float32)
        y = self.module_.target_to_scaled(torch.from_numpy(y_val).to(self.device_))
        loss_fn = VALIDATION_METRICS[self.validation_metric] or LOSSES[self.loss]
        batches = [make_batch(matrix, np.arange(start, min(len(y), start + PREDICT_CHUNK)),
                              cond[start:start + PREDICT_CHUNK]).to(self.device_)
                   for start in range(0, len(y), PREDICT_CHUNK)]

        def validate(model: MixtureModel) -> float:
            with torch.no_grad():  # clipped as predictions are: a far extrapolation costs what it would cost there
                low, high = ((bound - model.y_mean) / model.y_std for bound in (model.y_low, model.y_high))
                pred = torch.cat([model(batch) for batch in batches]).clamp(low, high)
                return float(loss_fn(pred, y))
        return validate

    def _fit_features(self) -> np.ndarray | None:
        """Standardised feature rows of the vocabulary (``feature_scaler_`` fitted on them), or None."""
        self.feature_scaler_ = None
        if self.features is None or self.features == GRAPH:  # a graph model's g reads SMILES (_build_module)
            return None
        raw = material_features(self.materials_, self.features)
        self.feature_scaler_ = FeatureScaler.fit(raw, what=f"features={self.features!r}")
        x = self.feature_scaler_.transform(raw, what=f"features={self.features!r}")
        log.info("features %r: %d materials x %d columns (%d with gaps; %d materials without any value)",
                 self.features, x.shape[0], x.shape[1], len(self.feature_scaler_.gaps),
                 int(raw.isna().all(axis=1).sum()))
        return x

    def material_feature_rows(self, materials: pd.DataFrame,
                              missing: str = "error") -> np.ndarray | list[str | None]:
        """Standardised feature rows of ``materials`` (a materials table; see :mod:`mrl.features`) with this
        model's scaler, shape ``(len(materials), n_features)``; ``missing="nan"`` treats absent feature columns as
        unknown values instead of an error. A graph model (``features="graph"``) gets the materials' checked SMILES
        instead (:func:`mrl.graph.material_smiles`; None where empty, or for all without a ``smiles`` column when
        ``missing="nan"``)."""
        self._check_fitted()
        if self.features == GRAPH:
            if "smiles" not in materials.columns and missing == "nan":
                return [None] * len(materials)
            return material_smiles(materials)
        if self.feature_scaler_ is None:
            raise ValueError("this model was fitted without features")
        what = f"features={self.features!r}"
        if self.features in ("columns", "supplier"):  # the fitted columns only; other columns are not read
            wanted = set(self.feature_scaler_.columns) | set(self.feature_scaler_.gaps)
            raw = materials[[c for c in materials.columns if c in wanted]].copy()
            raw.index = materials["material_id"].astype(str).to_numpy()
        elif self.features == "rdkit" and "smiles" not in materials.columns and missing == "nan":
            raw = pd.DataFrame(index=materials["material_id"].astype(str).to_numpy())
        else:
            raw = material_features(materials, self.features, drop_empty=False)
        return self.feature_scaler_.transform(raw, missing=missing, what=what)

    def _build_module(self, data: FormulaData, initial_table: np.ndarray | None,
                      features: np.ndarray | None = None) -> MixtureModel:
        module = MixtureModel(
            n_materials=data.n_materials, embedding_dim=self.embedding_dim, activation=self.activation,
            hidden=list(self.hidden), dropout=self.dropout, n_conditions=len(self.conditions_), head=self.head,
            content_scale=self.content_scale, median_content=self.typical_content(data),
            pinned=self.pinned_, init_std=self.init_std, aggregation=self.aggregation,
            interaction=self.interaction, interaction_layers=self.interaction_layers,
            interaction_heads=self.interaction_heads, interaction_width=self.interaction_width,
            interaction_mixing=self.interaction_mixing,
            tied_to=self.tied_to_,
            temperature_index=self.conditions_.index(self.temperature) if self.head == "vft" else 0,
            **({} if features is None else {"n_features": features.shape[1], "feature_map": self.feature_map}),
            **({"graph_smiles": material_smiles(self.materials_)} if self.features == GRAPH else {}))
        if features is not None:
            module.set_features(features)
        if initial_table is not None:
            set_initial_table(module, initial_table)
        return module

    def _monitor(self, data: FormulaData, eval_data: FormulaData | None) -> Callable[[MixtureModel], dict] | None:
        """Callback giving eval MAE and the MAE on a training subsample (property units), or None without eval."""
        if eval_data is None or not eval_data.n_samples:
            return None
        y_eval = eval_data.target_values(self.target_)
        x_eval, c_eval = self.encode(eval_data)
        sub = np.random.default_rng(self.seed).permutation(data.n_samples)[:max(eval_data.n_samples, 2000)]
        x_tr, c_tr = self.encode(data.subset(np.isin(np.arange(data.n_samples), sub)))
        y_tr = data.target_values(self.target_)[np.sort(sub)]

        def evaluate(model: MixtureModel) -> dict:
            return {"eval_mae": regression_metrics(y_eval, self._predict_encoded(x_eval, c_eval))["mae"],
                    "train_mae": regression_metrics(y_tr, self._predict_encoded(x_tr, c_tr))["mae"]}
        return evaluate

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        """Raise :class:`sklearn.exceptions.NotFittedError` before ``fit`` or ``load``."""
        check_is_fitted(self, "module_", msg="this MixtureRegressor is not fitted yet; call fit() or load()")

    def encode(self, data: FormulaData) -> tuple[sp.csr_matrix, np.ndarray]:
        """Content matrix in this model's vocabulary order, one row per measurement, shape
        ``(n_samples, n_materials)``, and the raw conditions, shape ``(n_samples, n_conditions)``; the inputs of
        :meth:`predict_matrix`. Materials outside the vocabulary follow ``unknown``."""
        self._check_fitted()
        check_constraints({"unknown": self.unknown}, source=type(self).__name__)
        missing = [c for c in self.conditions_ if c not in data.properties.columns]
        if missing:
            raise DataError(f"{data.name}: condition column(s) {missing} required by the model are missing")
        vocab = pd.Index(self.materials_["material_id"])
        cols = vocab.get_indexer(data.formulas["material_id"])
        unknown = cols < 0
        if unknown.any():
            if self.unknown == "error":
                ids = sorted(set(data.formulas["material_id"][unknown]))
                raise DataError(f"{data.name}: {len(ids)} material(s) not in the model's vocabulary, e.g. "
                                f"{ids[:5]}; use unknown='zero' to treat them as having no influence")
            log.warning("%s: %d unknown material rows treated as zero vectors", data.name, int(unknown.sum()))
        matrix = content_matrix(data.formulas, data.formula_ids, vocab)  # unknown materials are left out
        cond = data.properties[self.conditions_].to_numpy(np.float64) if self.conditions_ else \
            np.zeros((data.n_samples, 0))
        if np.isnan(cond).any():
            raise DataError(f"{data.name}: NaN in condition columns {self.conditions_}")
        return matrix[data.sample_rows()], cond

    def _predict_encoded(self, matrix: sp.csr_matrix, conditions: np.ndarray | None) -> np.ndarray:
        n = matrix.shape[0]
        cond = np.zeros((n, 0)) if conditions is None else np.asarray(conditions, np.float64).reshape(n, -1)
        if cond.shape[1] != len(self.conditions_):
            raise ValueError(f"expected {len(self.conditions_)} condition column(s) {self.conditions_}, "
                             f"got {cond.shape[1]}")
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, n, PREDICT_CHUNK):
                rows = np.arange(start, min(n, start + PREDICT_CHUNK))
                batch = make_batch(matrix, rows, cond[rows]).to(self.device_)
                out.append(self.module_.scaled_to_target(self.module_(batch)).cpu().numpy())
        pred = np.concatenate(out).astype(np.float64) if out else np.zeros(0)
        if getattr(self, "stack_", None) is None or not n:
            return pred
        t = np.clip(self.stack_.predict(matrix, cond, self.stack_feature_rows()) + pred, *self.target_range_)
        return 10 ** t if self.target_transform_ == "log10" else t

    def prediction_range(self) -> tuple[float, float]:
        """``(low, high)`` its predictions are clipped to, in model units (log10 for a log10 transform): the training
        targets' range widened by :data:`mrl.model.PREDICTION_MARGIN`."""
        self._check_fitted()
        if getattr(self, "stack_", None) is not None:  # the network's own range is that of the residual
            return float(self.target_range_[0]), float(self.target_range_[1])
        return float(self.module_.y_low), float(self.module_.y_high)

    def predict_matrix(self, matrix: sp.csr_matrix, conditions: np.ndarray | None = None) -> np.ndarray:
        """Predict from a content matrix in vocabulary order, shape ``(n, n_materials)``; property units."""
        self._check_fitted()
        matrix = sp.csr_matrix(matrix)
        if matrix.shape[1] != len(self.materials_):
            raise ValueError(f"matrix has {matrix.shape[1]} columns; the model has {len(self.materials_)} materials")
        return self._predict_encoded(matrix, conditions)

    def predict(self, data: FormulaData | pd.DataFrame, conditions: pd.DataFrame | None = None) -> np.ndarray:
        """Predicted property (original units) for every measurement, shape ``(n_samples,)``.

        ``data`` is a :class:`FormulaData` or a long-format formulas DataFrame (``formula_id, material_id,
        content``, no target needed) with, for a model with conditions, a ``conditions`` DataFrame
        (``formula_id`` and the model's condition columns; see :func:`mrl.data.prediction_input`).
        """
        if not isinstance(data, FormulaData):
            self._check_fitted()
            data = prediction_input(data, conditions, self.conditions_)
        return self._predict_encoded(*self.encode(data))

    def mixture_vectors(self, matrix: sp.csr_matrix, conditions: np.ndarray | None = None) -> np.ndarray:
        """The mixture vector (content-weighted sum, plus interaction updates) of each row of a content matrix in
        vocabulary order, shape ``(n, embedding_dim)``."""
        self._check_fitted()
        matrix = sp.csr_matrix(matrix)
        n = matrix.shape[0]
        cond = np.zeros((n, 0)) if conditions is None else np.asarray(conditions, np.float64).reshape(n, -1)
        out = []
        with torch.no_grad():
            for start in range(0, n, PREDICT_CHUNK):
                rows = np.arange(start, min(n, start + PREDICT_CHUNK))
                out.append(self.module_.mixture(make_batch(matrix, rows, cond[rows]).to(self.device_)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.module_.model_params["embedding_dim"]))

    # ------------------------------------------------------------------ vectors
    def embeddings(self) -> pd.DataFrame:
        """One row per material: id, descriptive columns, usage, norm and the effective vector ``e0..``."""
        self._check_fitted()
        with torch.no_grad():
            vec = self.module_.material_vectors().cpu().numpy()
        return self._vector_table(vec)

    def _vector_table(self, vec: np.ndarray) -> pd.DataFrame:
        table = self.materials_.copy()
        table["norm"] = np.linalg.norm(vec, axis=1)
        table["pinned"] = np.isin(np.arange(len(table)), self.pinned_)
        return pd.concat([table, pd.DataFrame(vec, columns=[f"e{i}" for i in range(vec.shape[1])])], axis=1)

    def snapshots(self) -> pd.DataFrame:
        """Material vectors over training, long table ``step, material_id, e0..``."""
        self._check_fitted()
        if not self.snapshots_:
            return pd.DataFrame(columns=["step", "material_id",
                                         *(f"e{i}" for i in range(self.module_.model_params["embedding_dim"]))])
        frames = []
        for step in sorted(self.snapshots_):
            vec = self.snapshots_[step]
            frame = pd.DataFrame(vec, columns=[f"e{i}" for i in range(vec.shape[1])])
            frame.insert(0, "material_id", self.materials_["material_id"].to_numpy())
            frame.insert(0, "step", int(step))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ persistence
    def _checkpoint_state(self) -> dict:
        """The checkpoint's ``estimator`` section: what rebuilds this fitted estimator around its module."""
        params = {**self.get_params(), "hidden": list(self.hidden), "pin": list(self.pin),
                  "tie": dict(self.tie or {}), "inverse_conditions": list(self.inverse_conditions)}
        materials = {col: [None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in values]
                     for col, values in self.materials_.to_dict(orient="list").items()}
        state = {"params": params, "materials": materials, "conditions": list(self.conditions_),
                 "target": self.target_, "target_transform": self.target_transform_,
                 "pinned": [int(i) for i in self.pinned_]}
        if getattr(self, "feature_scaler_", None) is not None:
            state["feature_scaler"] = self.feature_scaler_.to_state()
        if getattr(self, "stack_", None) is not None:
            state["stack"] = self.stack_.to_state()
            state["target_range"] = list(self.target_range_)
        if getattr(self, "steps_", None) is not None:
            state["steps_resolved"] = self.steps_
        return state

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint that :meth:`load` rebuilds (e.g. after :mod:`mrl.adapt` changed the vocabulary);
        it holds no optimiser state, so it cannot resume training. Written atomically."""
        self._check_fitted()
        progress = {"step": self.n_steps_, "history": self.history_.to_dict(orient="records"), "wall_s": self.wall_s_}
        if self.early_stopping or self.steps == "auto":
            progress.update(best_step=self.best_step_, stopped_step=self.stopped_step_)
        return save_checkpoint(path, self.module_, self._checkpoint_state(), progress=progress)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "MixtureRegressor":
        """Rebuild a fitted estimator from a checkpoint (:mod:`mrl.checkpoint`); snapshots are read from beside
        it while the run is unfinished, else left empty (a finished run has them in ``snapshots.parquet``)."""
        ckpt = load_checkpoint(path)
        state = ckpt["estimator"]
        est = cls(**{**state["params"], "device": device})
        est.materials_ = pd.DataFrame(state["materials"])
        est.conditions_ = list(state["conditions"])
        est.target_ = state["target"]
        est.target_transform_ = state["target_transform"]
        est.pinned_ = list(state["pinned"])
        est.tied_to_ = ckpt["model_params"].get("tied_to")
        est.device_ = resolve_device(device)
        module = MixtureModel(**ckpt["model_params"])
        module.load_state_dict(ckpt["state_dict"])
        est.module_ = module.to(est.device_).eval()
        est.n_steps_ = ckpt["progress"]["step"]
        est.history_ = pd.DataFrame(ckpt["progress"]["history"])
        est.snapshots_ = load_snapshots(snapshots_path(path))
        est.wall_s_ = ckpt["progress"]["wall_s"]
        est.best_step_ = ckpt["progress"].get("best_step")
        est.stopped_step_ = ckpt["progress"].get("stopped_step")
        scaler = state.get("feature_scaler")
        est.feature_scaler_ = None if scaler is None else FeatureScaler.from_state(scaler)
        est.stack_ = StackBase.from_state(state["stack"]) if state.get("stack") else None
        est.target_range_ = tuple(state["target_range"]) if state.get("target_range") else None
        est.steps_ = state.get("steps_resolved", est.steps if isinstance(est.steps, int) else est.n_steps_)
        return est
