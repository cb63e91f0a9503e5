"""``ranvier train`` / ``ranvier predict``: an MLP on an expression table, from one command.

A table is a CSV or TSV file (by extension: .tsv/.tab -> tab, .csv -> comma; otherwise
a tab in the header line means TSV), or an .h5ad file read with anndata when it is installed
(the genes of ``X`` are the features, an ``obs`` column the target, ``obs_names`` the
sample ids). A CSV/TSV has one header line, samples as rows, features as
columns, an optional sample-id column (``--id-column``, or a first column whose header is
empty or one of ``id, sample, sample_id, cell, cell_id, barcode, name``) and the target
column. Feature values must be numbers; empty cells and NA/NaN are missing values, refused
(with their rows and columns named) unless ``--impute`` replaces them by the training
column means.

The task is classification when the target has a non-numeric value, or only integer values
with at most 20 distinct ones; regression otherwise (``--task`` forces either).

Training: the features are standardised with the training part's statistics, a stratified
validation part is held out (``--val-size``), an MLP (``--hidden``, ReLU) is trained with
Adam and early stopping on the validation loss (the best weights are kept). Regression
targets are standardised too (undone for predictions and metrics).

The model directory holds ``model.safetensors`` (weights), ``model.json`` (everything
``predict`` needs: feature names, scaling, imputation values, class names, architecture),
``metrics.json``, ``history.json`` and ``curves.png`` (when matplotlib is installed).

User mistakes raise ``UserError``, which the command line prints as one line (exit code 2).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings

import numpy as np

__all__ = ["UserError", "read_table", "train_table", "predict_table"]

_ID_HEADERS = {"", "id", "sample", "sample_id", "cell", "cell_id", "barcode", "name"}
_MISSING = {"", "na", "nan", "n/a", "null"}
_MAX_CLASSES_FOR_NUMBERS = 20
_FORMAT = "ranvier.mlp-table"


class UserError(Exception):
    """A mistake in the command's input, reported as one line without a traceback."""


def _show(names, limit=5) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class Table:
    """A parsed CSV/TSV table: ``columns`` (header names) and ``rows`` (lists of strings)."""

    id_hint = None  # a column that is the sample id when --id-column is not given

    def __init__(self, path, columns, rows):
        self.path, self.columns, self.rows = path, columns, rows

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def column(self, name) -> list[str]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def feature_columns(self, exclude) -> list[str]:
        return [c for c in self.columns if c not in exclude]

    def numeric_block(self, names):
        """(rows, len(names)) float64 without parsing, or None (CSV: parse the strings)."""
        return None


class AnnDataTable(Table):
    """An .h5ad file read with anndata: the genes (``var_names``) are the features, the
    ``obs`` columns can be targets, ``obs_names`` is the sample id."""

    id_hint = "obs_names"

    def __init__(self, path, adata):
        matrix = adata.X
        if hasattr(matrix, "toarray"):  # scipy sparse
            matrix = matrix.toarray()
        self.path = path
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.genes = [str(g) for g in adata.var_names]
        self.obs = {str(c): [str(v) for v in adata.obs[c]] for c in adata.obs.columns}
        self.obs["obs_names"] = [str(v) for v in adata.obs_names]
        self.columns = self.genes + [c for c in self.obs if c not in set(self.genes)]
        self.rows = None

    @property
    def n_rows(self) -> int:
        return self.matrix.shape[0]

    def column(self, name) -> list[str]:
        if name in self.obs:
            return self.obs[name]
        return [repr(v) for v in self.matrix[:, self.genes.index(name)]]

    def feature_columns(self, exclude) -> list[str]:
        return [g for g in self.genes if g not in exclude]

    def numeric_block(self, names):
        if not all(n in set(self.genes) for n in names):
            return None
        index = {g: i for i, g in enumerate(self.genes)}
        return self.matrix[:, [index[n] for n in names]]


def _read_h5ad(path) -> Table:
    try:
        import anndata
    except ImportError:
        raise UserError(f"{path}: reading .h5ad files needs anndata (pip install anndata, or ranvier[h5ad]), or "
                        f"export the table to CSV") from None
    try:
        with warnings.catch_warnings():
            # Files from older anndata versions are converted with a warning per element.
            warnings.simplefilter("ignore")
            adata = anndata.read_h5ad(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - h5py/anndata raise many kinds; one line for the user
        raise UserError(f"{path}: cannot be read as .h5ad ({type(exc).__name__}: {exc})") from None
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(f"{path}: the table is empty ({adata.n_obs} samples x {adata.n_vars} genes)")
    return AnnDataTable(path, adata)


def read_table(path) -> Table:
    """Read a CSV/TSV file into a Table (strings), checking its shape."""
    path = os.fspath(path)
    if path.lower().endswith(".h5ad"):
        return _read_h5ad(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a table") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc})") from None
    lower = path.lower()
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if lower.endswith((".tsv", ".tab")) or (
        not lower.endswith(".csv") and "\t" in first_line) else ","
    lines = [row for row in csv.reader(text.splitlines(), delimiter=delimiter)
             if any(cell.strip() for cell in row)]
    if not lines:
        raise UserError(f"{path}: the table is empty")
    columns = [name.strip() for name in lines[0]]
    rows = lines[1:]
    if not rows:
        raise UserError(f"{path}: the table has a header but no rows")
    duplicates = sorted({n for n in columns if columns.count(n) > 1 and n})
    if duplicates:
        raise UserError(f"{path}: duplicate column names {_show(duplicates)}")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(columns):
            raise UserError(f"{path}: line {number} has {len(row)} fields but the header has "
                            f"{len(columns)}")
    return Table(path, columns, rows)


def _id_column(table: Table, requested, target) -> str | None:
    if requested is not None:
        if requested not in table.columns:
            raise UserError(f"{table.path}: no id column {requested!r} (columns: "
                            f"{_show(table.columns)})")
        return requested
    if table.id_hint is not None and table.id_hint != target:
        return table.id_hint
    first = table.columns[0]
    if first != target and first.lower() in _ID_HEADERS:
        return first
    return None


def _parse_numbers(table: Table, names, *, allow_missing: bool) -> np.ndarray:
    """(rows, len(names)) float64 with NaN for missing cells; non-numbers are errors."""
    values = table.numeric_block(names)
    if values is None:
        values = _parse_strings(table, names)
    infinite = np.isinf(values)
    if infinite.any():
        r, c = np.argwhere(infinite)[0]
        raise UserError(f"{table.path}: column {names[c]!r} has an infinite value on line {r + 2}")
    if not allow_missing and np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values).any(axis=1)) + 2
        cols = [names[c] for c in np.flatnonzero(np.isnan(values).any(axis=0))]
        raise UserError(f"{table.path}: missing values on lines {_show(rows.tolist())} in columns "
                        f"{_show(cols)}; fill them in or pass --impute (training column means)")
    return values


def _parse_strings(table: Table, names) -> np.ndarray:
    indices = [table.columns.index(n) for n in names]
    values = np.empty((len(table.rows), len(names)), dtype=np.float64)
    for r, row in enumerate(table.rows):
        for c, index in enumerate(indices):
            cell = row[index].strip()
            if cell.lower() in _MISSING:
                values[r, c] = np.nan
                continue
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise UserError(f"{table.path}: column {names[c]!r} has the non-numeric value "
                                f"{cell!r} on line {r + 2}; feature columns must be numbers "
                                f"(give a sample-id column with --id-column)") from None
    return values


def _targets(table: Table, target: str, task: str):
    cells = [cell.strip() for cell in table.column(target)]
    missing = [i + 2 for i, cell in enumerate(cells) if cell.lower() in _MISSING]
    if missing:
        raise UserError(f"{table.path}: the target column {target!r} is empty on lines "
                        f"{_show(missing)}")
    try:
        numbers = np.array([float(cell) for cell in cells])
    except ValueError:
        numbers = None
    if task == "auto":
        if numbers is None or not np.isfinite(numbers).all():
            task = "classification"
        elif np.all(numbers == np.round(numbers)) and len(np.unique(numbers)) <= _MAX_CLASSES_FOR_NUMBERS:
            task = "classification"
        else:
            task = "regression"
    if task == "regression":
        if numbers is None or not np.isfinite(numbers).all():
            raise UserError(f"{table.path}: --task regression needs a numeric target, but "
                            f"{target!r} has non-numbers")
        return task, numbers, None
    if numbers is not None and np.all(numbers == np.round(numbers)):
        classes = [cell for _, cell in sorted({(float(c), c) for c in cells})]
        classes = list(dict.fromkeys(classes))
    else:
        classes = sorted(set(cells))
    if len(classes) < 2:
        raise UserError(f"{table.path}: the target column {target!r} has a single class "
                        f"{classes[0]!r}; a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    return task, np.array([index[c] for c in cells], dtype=np.int64), classes


def _mlp(n_in: int, hidden: list[int], n_out: int):
    from .. import nn
    layers, width = [], n_in
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _scores(task, outputs, target_scale):
    if task == "classification":
        return _softmax(outputs.astype(np.float64))
    return outputs[:, 0].astype(np.float64) * target_scale[1] + target_scale[0]


def _metrics(task, y, scores) -> dict:
    from .. import metrics
    if task == "regression":
        return {"mse": metrics.mean_squared_error(y, scores), "r2": metrics.r2_score(y, scores)}
    predicted = scores.argmax(axis=1)
    result = {"accuracy": metrics.accuracy_score(y, predicted),
              "macro_f1": metrics.f1_score(y, predicted, average="macro", zero_division=0)}
    present = np.unique(y)
    if len(present) >= 2:
        if scores.shape[1] == 2:
            result["roc_auc"] = metrics.roc_auc_score(y, scores[:, 1])
        elif len(present) == scores.shape[1]:
            result["roc_auc"] = metrics.roc_auc_score(y, scores)
    return {k: float(v) for k, v in result.items()}


def _features(table: Table, spec: dict, impute: bool) -> np.ndarray:
    """The model's feature matrix from a table: columns by name, checked, imputed."""
    expected = spec["features"]
    ignored = {spec["target"], spec.get("id_column")} - {None}
    present = table.feature_columns(ignored)
    missing = [c for c in expected if c not in table.columns]
    unexpected = [c for c in present if c not in set(expected)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing columns {_show(missing)}")
        if unexpected:
            parts.append(f"unexpected columns {_show(unexpected)}")
        raise UserError(f"{table.path}: the feature columns do not match the model's: "
                        + "; ".join(parts))
    values = _parse_numbers(table, expected, allow_missing=impute or spec.get("impute") is not None)
    if spec.get("impute") is not None:
        fill = np.asarray(spec["impute"], dtype=np.float64)
        values = np.where(np.isnan(values), fill, values)
    return values


def _format(value: float) -> str:
    return f"{value:.4f}"


def train_table(table_path, *, target, test_path=None, hidden=(256, 128), epochs=100, lr=1e-3,
                batch_size=32, val_size=0.2, patience=10, task="auto", id_column=None,
                impute=False, device="cpu", out=None, seed=0, progress=True, stream=None) -> dict:
    """Train an MLP on a table (see the module docstring); returns the metrics dict."""
    import ranvier
    from .. import nn, optim
    from ..data import Standardize, train_val_test_split
    from .callbacks import EarlyStopping
    from .._arrays import resolve_device
    from .loop import TrainingDivergedError, fit, predict

    stream = sys.stdout if stream is None else stream
    if device != "cpu":
        if not ranvier.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available "
                            f"({ranvier.cuda.unavailable_reason()})")
        try:
            device = resolve_device(device, "--device")
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(str(exc)) from None
    table = read_table(table_path)
    if target not in table.columns:
        raise UserError(f"{table.path}: no target column {target!r} (columns: "
                        f"{_show(table.columns)})")
    id_name = _id_column(table, id_column, target)
    features = table.feature_columns({target, id_name})
    if not features:
        raise UserError(f"{table.path}: no feature columns besides the target")
    x = _parse_numbers(table, features, allow_missing=impute)
    task, y, classes = _targets(table, target, task)

    ranvier.manual_seed(seed)
    try:
        (x_train, y_train), (x_val, y_val), _ = train_val_test_split(
            x, y, val_size=val_size, test_size=0,
            stratify=y if task == "classification" else None, seed=seed)
    except ValueError as exc:
        raise UserError(f"{table.path}: cannot hold out a validation part ({exc})") from None
    impute_values = None
    if impute:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: reported below
            impute_values = np.nanmean(x_train, axis=0)
        if np.isnan(impute_values).any():
            empty = [features[i] for i in np.flatnonzero(np.isnan(impute_values))]
            raise UserError(f"{table.path}: columns {_show(empty)} have no values in the "
                            f"training part to impute from")
        x_train = np.where(np.isnan(x_train), impute_values, x_train)
        x_val = np.where(np.isnan(x_val), impute_values, x_val)
    scaler = Standardize().fit(x_train)
    target_scale = (0.0, 1.0)
    if task == "regression":
        spread = float(y_train.std())
        target_scale = (float(y_train.mean()), spread if spread > 0 else 1.0)
    n_out = len(classes) if task == "classification" else 1

    def prepare(values):
        return scaler.transform(values).astype(np.float32)

    def prepare_targets(values):
        if task == "classification":
            return values
        return ((values - target_scale[0]) / target_scale[1]).astype(np.float32)[:, None]

    model = _mlp(len(features), list(hidden), n_out)
    loss = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    print(f"{table.path}: {table.n_rows} samples x {len(features)} features; {task}"
          + (f" of {len(classes)} classes" if classes else "")
          + f"; {len(y_train)} for training, {len(y_val)} for validation", file=stream, flush=True)
    try:
        history = fit(model, (prepare(x_train), prepare_targets(y_train)), loss=loss,
                      optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                      validation_data=(prepare(x_val), prepare_targets(y_val)),
                      callbacks=[EarlyStopping(patience=patience, restore_best_weights=True)],
                      device=device, progress=progress, stream=stream)
    except TrainingDivergedError as exc:
        raise UserError(f"training diverged: {exc} (try a smaller --lr)") from None

    spec = {"format": _FORMAT, "version": 1, "task": task, "target": target,
            "id_column": id_name, "features": features, "classes": classes,
            "hidden": list(hidden), "n_outputs": n_out,
            "scaler": {k: v.tolist() for k, v in scaler.state_dict().items()},
            "target_scale": list(target_scale),
            "impute": impute_values.tolist() if impute_values is not None else None,
            "ranvier_version": ranvier.__version__}
    val_outputs = predict(model, prepare(x_val), device=device)
    results = {"validation": _metrics(task, y_val, _scores(task, val_outputs, target_scale))}
    if test_path is not None:
        test = read_table(test_path)
        if target not in test.columns:
            raise UserError(f"{test.path}: no target column {target!r} to score against")
        x_test = prepare(_features(test, spec, impute))
        if task == "regression":
            y_test = _targets(test, target, "regression")[1]
        else:
            index = {c: i for i, c in enumerate(classes)}
            cells = [cell.strip() for cell in test.column(target)]
            unknown = sorted(set(cells) - set(index))
            if unknown:
                raise UserError(f"{test.path}: target classes {_show(unknown)} were not in the "
                                f"training table")
            y_test = np.array([index[c] for c in cells], dtype=np.int64)
        test_outputs = predict(model, x_test, device=device)
        results["test"] = _metrics(task, y_test, _scores(task, test_outputs, target_scale))

    out = os.fspath(out) if out is not None else os.path.splitext(os.path.basename(table.path))[0] + "-model"
    try:
        os.makedirs(out, exist_ok=True)
        ranvier.save(model.state_dict(), os.path.join(out, "model.safetensors"),
                     metadata={"format": _FORMAT})
        with open(os.path.join(out, "model.json"), "w") as f:
            json.dump(spec, f, indent=1)
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(out, "history.json"), "w") as f:
            json.dump(history.history, f)
    except OSError as exc:
        raise UserError(f"cannot write the model to {out}: {exc}") from None
    try:
        history.plot(os.path.join(out, "curves.png"))
        curves = "curves.png"
    except ImportError:
        curves = 'no curves.png (pip install "ranvier[plot]" for learning curves)'
    for part, values in results.items():
        print(f"{part}: " + ", ".join(f"{k} {_format(v)}" for k, v in values.items()),
              file=stream)
    print(f"model written to {out}/ (model.safetensors, model.json, metrics.json, "
          f"history.json, {curves})", file=stream, flush=True)
    return results


def predict_table(model_dir, table_path, *, out="predictions.csv", impute=False, stream=None) -> str:
    """Apply a model written by train_table to a table; writes a CSV and returns its path."""
    from .. import serialization
    from ..data import Standardize
    from .loop import predict

    stream = sys.stdout if stream is None else stream
    model_dir = os.fspath(model_dir)
    try:
        with open(os.path.join(model_dir, "model.json")) as f:
            spec = json.load(f)
        weights = serialization.load(os.path.join(model_dir, "model.safetensors"))
    except FileNotFoundError as exc:
        raise UserError(f"{model_dir}: not a model directory from 'ranvier train' "
                        f"({os.path.basename(exc.filename)} is missing)") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{model_dir}: cannot read the model ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != _FORMAT:
        raise UserError(f"{model_dir}: model.json was not written by 'ranvier train'")
    table = read_table(table_path)
    x = _features(table, spec, impute)
    scaler = Standardize().load_state_dict(spec["scaler"])
    model = _mlp(len(spec["features"]), spec["hidden"], spec["n_outputs"])
    model.load_state_dict(weights)
    scores = _scores(spec["task"], predict(model, scaler.transform(x).astype(np.float32)),
                     spec["target_scale"])
    id_name = spec.get("id_column")
    ids = table.column(id_name) if id_name in table.columns else [str(i + 1) for i in range(table.n_rows)]
    header = [id_name or "row"]
    if spec["task"] == "classification":
        header += ["predicted"] + [f"probability_{c}" for c in spec["classes"]]
        rows = [[i, spec["classes"][int(np.argmax(p))]] + [f"{v:.6g}" for v in p]
                for i, p in zip(ids, scores)]
    else:
        header += [f"predicted_{spec['target']}"]
        rows = [[i, f"{v:.6g}"] for i, v in zip(ids, scores)]
    try:
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc}") from None
    print(f"{len(rows)} predictions written to {out}", file=stream)
    return out
