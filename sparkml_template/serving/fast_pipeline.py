"""Score a saved Spark ML pipeline with numpy and pandas: no JVM, the Spark model's answers.

Reads the directory Spark ML itself wrote (``PipelineModel.write().save``, the ``sparkml/``
folder of MLflow's Spark flavour): each stage's ``metadata/part-*`` JSON (its params) and its
``data/*.parquet`` (read with pyarrow), and reproduces every stage in float64, in Spark's own
order of operations. The stages are those the template's pipelines are made of; any other
stage makes ``load_pipeline`` raise ``NotConvertible``, naming it.

This module is shipped inside the logged model (MLflow ``code_paths``) and is MLflow's pyfunc
loader for it (``_load_pyfunc``): it imports nothing from the project and nothing of Spark.
``SPARKML_FAST_SERVING=off`` in the serving process scores with Spark instead.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SWITCH = "SPARKML_FAST_SERVING"  # off, 0, false or no: serve the Spark form
OFF_VALUES = frozenset({"off", "0", "false", "no"})
PREDICTION = "prediction"


class NotConvertible(Exception):
    """A stage (named, with its position) that this scorer cannot reproduce exactly."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Reading Spark ML's saved files


def _metadata(stage_dir: Path) -> dict[str, Any]:
    parts = sorted((stage_dir / "metadata").glob("part-*"))
    if not parts:
        raise NotConvertible(stage_dir.name, "no metadata/part-* file")
    return json.loads(parts[0].read_text().splitlines()[0])


def _param(meta: dict[str, Any], name: str, default: Any = None) -> Any:
    if name in meta.get("paramMap", {}):
        return meta["paramMap"][name]
    return meta.get("defaultParamMap", {}).get(name, default)


def _rows(stage_dir: Path, sub: str = "data") -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(str(stage_dir / sub)).to_pylist()  # skips _SUCCESS and .crc files


def _vector(value: dict[str, Any]) -> np.ndarray:
    """Spark's VectorUDT struct (type 0 sparse, 1 dense) as a dense float64 array."""
    if value["type"] == 1:
        return np.asarray(value["values"], dtype=np.float64)
    out = np.zeros(value["size"], dtype=np.float64)
    out[np.asarray(value["indices"], dtype=np.int64)] = value["values"]
    return out


def _matrix(value: dict[str, Any]) -> np.ndarray:
    """Spark's MatrixUDT struct (type 0 sparse CSC, 1 dense column-major) as a dense array."""
    rows, cols = value["numRows"], value["numCols"]
    transposed = value["isTransposed"]
    if value["type"] == 1:
        order = "C" if transposed else "F"
        return np.asarray(value["values"], dtype=np.float64).reshape((rows, cols), order=order)
    out = np.zeros((rows, cols), dtype=np.float64)
    ptrs, index, values = value["colPtrs"], value["rowIndices"], value["values"]
    for major in range(len(ptrs) - 1):  # a column (CSC), or a row when transposed (CSR)
        for k in range(ptrs[major], ptrs[major + 1]):
            if transposed:
                out[major, index[k]] = values[k]
            else:
                out[index[k], major] = values[k]
    return out


# ---------------------------------------------------------------------------------------------
# Input columns as Spark would read them


def _is_null(values: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(values), dtype=bool)


def _as_double(values: Any, n: int) -> np.ndarray:
    """``CAST(x AS DOUBLE)``: numbers as float64, booleans as 0/1, null (and anything that is
    not a number) as NaN."""
    if values is None:
        return np.full(n, np.nan)
    series = pd.Series(values)
    if series.dtype == bool:
        return series.to_numpy(dtype=np.float64)
    if series.dtype.kind in "iuf":
        return series.to_numpy(dtype=np.float64)
    if series.dtype == object:
        series = series.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else v)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _local_naive(stamps: pd.Series) -> pd.Series:
    """Wall-clock time: Spark reads a naive timestamp as local time and takes parts in it."""
    if getattr(stamps.dt, "tz", None) is not None:
        from dateutil.tz import tzlocal

        stamps = stamps.dt.tz_convert(tzlocal()).dt.tz_localize(None)
    return stamps


_PARTS = ("year", "month", "dayofweek", "dayofyear", "hour")


def _date_parts(values: Any, n: int) -> dict[str, np.ndarray]:
    """``fn(CAST(x AS TIMESTAMP))`` for each part, as doubles (null -> NaN).

    datetime64 columns (what MLflow's ``datetime`` type gives) are computed vectorised; Python
    dates and datetimes (Spark's ``toPandas``) one by one, which also covers years outside
    pandas' nanosecond range; text is parsed as ISO 8601 (unparsable -> null).
    """
    out = {part: np.full(n, np.nan) for part in _PARTS}
    if values is None:
        return out
    series = pd.Series(values).reset_index(drop=True)
    if series.dtype == object:
        text = series.map(lambda v: isinstance(v, str))
        if text.any():
            parsed = pd.to_datetime(series[text], errors="coerce", format="ISO8601")
            series = series.astype(object)
            series[text] = [None if pd.isna(v) else v.to_pydatetime() for v in parsed]
        if not series.map(lambda v: v is None or isinstance(v, dt.date) or pd.isna(v)).all():
            series = pd.to_datetime(series, errors="coerce")
    if series.dtype.kind == "M" or isinstance(series.dtype, pd.DatetimeTZDtype):
        stamps = _local_naive(series)
        valid = stamps.notna().to_numpy()
        fields = {
            "year": stamps.dt.year,
            "month": stamps.dt.month,
            "dayofweek": (stamps.dt.dayofweek + 1) % 7 + 1,  # Spark: Sunday 1 … Saturday 7
            "dayofyear": stamps.dt.dayofyear,
            "hour": stamps.dt.hour,
        }
        for part, field in fields.items():
            out[part][valid] = field.to_numpy(dtype=np.float64, na_value=np.nan)[valid]
        return out
    for i, value in enumerate(series):
        if value is None or value is pd.NaT or (not isinstance(value, dt.date) and pd.isna(value)):
            continue
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone().replace(tzinfo=None)
        out["year"][i] = value.year
        out["month"][i] = value.month
        out["dayofweek"][i] = value.isoweekday() % 7 + 1
        out["dayofyear"][i] = value.timetuple().tm_yday
        out["hour"][i] = value.hour if isinstance(value, dt.datetime) else 0
    return out


# ---------------------------------------------------------------------------------------------
# The stages


class Stage:
    """One fitted stage: reads columns from ``cols`` and adds its own."""

    inputs: tuple[str, ...] = ()  # columns read from the request itself (not made by a stage)

    def apply(self, cols: dict[str, Any], n: int) -> None:
        raise NotImplementedError


_NAME = r"`((?:[^`]|``)+)`"
_CAST = re.compile(rf"CAST\({_NAME} AS DOUBLE\) AS {_NAME}")
_PART = re.compile(
    rf"CAST\((year|month|dayofweek|dayofyear|hour)\(CAST\({_NAME} AS TIMESTAMP\)\) AS DOUBLE\)"
    rf" AS {_NAME}"
)


def _unquote(name: str) -> str:
    return name.replace("``", "`")


class SqlCasts(Stage):
    """The SQL stage ``build_pipeline`` makes: ``SELECT *, CAST(`x` AS DOUBLE) AS `x_double`,
    CAST(year(CAST(`d` AS TIMESTAMP)) AS DOUBLE) AS `d_year`, … FROM __THIS__``; no other
    statement."""

    def __init__(self, name: str, meta: dict[str, Any]) -> None:
        statement = _param(meta, "statement", "").strip()
        head, tail = "SELECT *, ", " FROM __THIS__"
        if not (statement.startswith(head) and statement.endswith(tail)):
            raise NotConvertible(name, f"SQL statement not of the template's shape: {statement}")
        body = statement[len(head) : -len(tail)]
        self.casts: list[tuple[str, str]] = []
        self.parts: list[tuple[str, str, str]] = []
        position = 0
        while position < len(body):
            if position:
                if not body.startswith(", ", position):
                    raise NotConvertible(name, f"unexpected SQL at {body[position:][:60]!r}")
                position += 2
            cast = _CAST.match(body, position)
            part = _PART.match(body, position)
            if cast:
                self.casts.append((_unquote(cast.group(1)), _unquote(cast.group(2))))
                position = cast.end()
            elif part:
                fn, source, target = part.group(1), _unquote(part.group(2)), part.group(3)
                self.parts.append((fn, source, _unquote(target)))
                position = part.end()
            else:
                raise NotConvertible(name, f"SQL expression not supported: {body[position:][:80]}")
        self.inputs = tuple(dict.fromkeys([s for s, _ in self.casts] + [p[1] for p in self.parts]))

    def apply(self, cols: dict[str, Any], n: int) -> None:
        for source, target in self.casts:
            cols[target] = _as_double(cols.get(source), n)
        dates: dict[str, dict[str, np.ndarray]] = {}
        for fn, source, target in self.parts:
            if source not in dates:
                dates[source] = _date_parts(cols.get(source), n)
            cols[target] = dates[source][fn]


class Imputer(Stage):
    """``ImputerModel``: null, NaN and ``missingValue`` become the column's surrogate."""

    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path) -> None:
        self.inputs_cols = _param(meta, "inputCols") or [_param(meta, "inputCol")]
        self.outputs = _param(meta, "outputCols") or [_param(meta, "outputCol")]
        missing = _param(meta, "missingValue", "NaN")
        self.missing = float(missing) if missing not in (None, "NaN") else math.nan
        surrogates = _rows(stage_dir)[0]
        self.surrogates = [float(surrogates[c]) for c in self.inputs_cols]

    def apply(self, cols: dict[str, Any], n: int) -> None:
        for source, target, surrogate in zip(
            self.inputs_cols, self.outputs, self.surrogates, strict=True
        ):
            values = np.asarray(cols[source], dtype=np.float64)
            gap = np.isnan(values)
            if not math.isnan(self.missing):
                gap |= values == self.missing
            cols[target] = np.where(gap, surrogate, values)


class StringIndexer(Stage):
    """``StringIndexerModel`` (one or many columns): each label to its index; with
    ``handleInvalid=keep``, null and unseen labels to ``len(labels)``."""

    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path) -> None:
        self.name = name
        self.sources = _param(meta, "inputCols") or [_param(meta, "inputCol")]
        self.targets = _param(meta, "outputCols") or [_param(meta, "outputCol")]
        self.invalid = _param(meta, "handleInvalid", "error")
        if self.invalid not in ("keep", "error"):
            raise NotConvertible(name, f"handleInvalid={self.invalid} (rows would be dropped)")
        data = _rows(stage_dir)[0]
        arrays = data.get("labelsArray") or [data["labels"]]
        self.maps = [{label: float(i) for i, label in enumerate(labels)} for labels in arrays]
        self.inputs = tuple(self.sources)

    def apply(self, cols: dict[str, Any], n: int) -> None:
        for source, target, mapping in zip(self.sources, self.targets, self.maps, strict=True):
            values = cols.get(source)
            unknown = float(len(mapping))
            if values is None:
                values = np.full(n, None, dtype=object)
            out = np.empty(n, dtype=np.float64)
            for i, value in enumerate(np.asarray(values, dtype=object)):
                label = None if value is None or _scalar_null(value) else _as_text(value)
                index = mapping.get(label, unknown) if label is not None else unknown
                if index == unknown and self.invalid == "error":
                    raise ValueError(f"{self.name}: unseen label {label!r} in column {source!r}")
                out[i] = index
            cols[target] = out


def _scalar_null(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_text(value: Any) -> str:
    """``CAST(x AS STRING)`` for what a string column can hold."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


class OneHotEncoder(Stage):
    """``OneHotEncoderModel``: Spark's slot layout, ``dropLast`` and ``handleInvalid=keep``
    (an invalid index takes the extra last slot, or none when ``dropLast`` drops it)."""

    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path) -> None:
        self.sources = _param(meta, "inputCols") or [_param(meta, "inputCol")]
        self.targets = _param(meta, "outputCols") or [_param(meta, "outputCol")]
        self.keep = _param(meta, "handleInvalid", "error") == "keep"
        drop_last = bool(_param(meta, "dropLast", True))
        self.name = name
        self.sizes = [int(s) for s in _rows(stage_dir)[0]["categorySizes"]]
        self.widths = [s + (1 if self.keep else 0) - (1 if drop_last else 0) for s in self.sizes]

    def apply(self, cols: dict[str, Any], n: int) -> None:
        for source, target, size, width in zip(
            self.sources, self.targets, self.sizes, self.widths, strict=True
        ):
            values = np.asarray(cols[source], dtype=np.float64)
            valid = (values >= 0) & (values < size)
            if not self.keep and not valid.all():
                raise ValueError(f"{self.name}: invalid category index in {source!r}")
            index = np.where(valid, np.trunc(np.where(valid, values, 0.0)), size).astype(np.int64)
            vectors = np.zeros((n, width), dtype=np.float64)
            hot = index < width
            vectors[np.nonzero(hot)[0], index[hot]] = 1.0
            cols[target] = vectors


class VectorAssembler(Stage):
    """``VectorAssembler``: numbers and vectors side by side; with ``handleInvalid=keep`` a
    null number is NaN (``error`` refuses NaN and null, as Spark does)."""

    def __init__(self, name: str, meta: dict[str, Any]) -> None:
        self.name = name
        self.sources = _param(meta, "inputCols")
        self.target = _param(meta, "outputCol")
        self.invalid = _param(meta, "handleInvalid", "error")
        if self.invalid not in ("keep", "error"):
            raise NotConvertible(name, f"handleInvalid={self.invalid} (rows would be dropped)")

    def apply(self, cols: dict[str, Any], n: int) -> None:
        blocks = []
        for source in self.sources:
            values = np.asarray(cols[source], dtype=np.float64)
            blocks.append(values.reshape(n, -1) if values.ndim == 2 else values.reshape(n, 1))
        matrix = np.hstack(blocks) if blocks else np.zeros((n, 0))
        if self.invalid == "error" and np.isnan(matrix).any():
            raise ValueError(f"{self.name}: a null or NaN value (handleInvalid=error)")
        cols[self.target] = matrix


class IndexToString(Stage):
    """``IndexToString``: a predicted index back to its label."""

    def __init__(self, name: str, meta: dict[str, Any]) -> None:
        self.source = _param(meta, "inputCol")
        self.target = _param(meta, "outputCol")
        self.labels = list(_param(meta, "labels") or [])
        if not self.labels:
            raise NotConvertible(name, "IndexToString without labels (read from metadata)")

    def apply(self, cols: dict[str, Any], n: int) -> None:
        index = np.asarray(cols[self.source], dtype=np.float64).astype(np.int64)
        cols[self.target] = np.asarray([self.labels[i] for i in index], dtype=object)


# ---------------------------------------------------------------------------------------------
# Predictors


class Predictor(Stage):
    """A model reading ``featuresCol``; writes prediction, and for classifiers the raw
    prediction and probability vectors."""

    def __init__(self, name: str, meta: dict[str, Any]) -> None:
        self.name = name
        self.features = _param(meta, "featuresCol", "features")
        self.prediction = _param(meta, "predictionCol", "prediction")
        self.raw_col = _param(meta, "rawPredictionCol", "rawPrediction")
        self.probability_col = _param(meta, "probabilityCol", "probability")
        if "thresholds" in meta.get("paramMap", {}):
            raise NotConvertible(name, "thresholds is set")

    @property
    def classifier(self) -> bool:
        """Whether it writes raw predictions and probabilities."""
        return False


def _sigmoid(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-values))


def _normalised(raw: np.ndarray) -> np.ndarray:
    """``normalizeToProbabilitiesInPlace``: each value over the (sequential) sum, if not 0."""
    total = np.cumsum(raw, axis=1)[:, -1:] if raw.shape[1] else np.zeros((len(raw), 1))
    safe = np.where(total == 0, 1.0, total)
    return np.where(total == 0, raw, raw / safe)


class LogisticRegression(Predictor):
    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path) -> None:
        super().__init__(name, meta)
        data = _rows(stage_dir)[0]
        self.multinomial = bool(data["isMultinomial"])
        self.coefficients = _matrix(data["coefficientMatrix"])  # classes (1 if binary) x features
        self.intercepts = _vector(data["interceptVector"])
        threshold = float(_param(meta, "threshold", 0.5))
        if threshold == 0.0:
            self.raw_threshold = -math.inf
        elif threshold == 1.0:
            self.raw_threshold = math.inf
        else:
            self.raw_threshold = math.log(threshold / (1.0 - threshold))

    @property
    def classifier(self) -> bool:
        return True

    def apply(self, cols: dict[str, Any], n: int) -> None:
        x = cols[self.features]
        margins = _dot_rows(x, self.coefficients) + self.intercepts
        if self.multinomial:
            raw = margins
            top = raw.max(axis=1, keepdims=True)
            with np.errstate(over="ignore", invalid="ignore"):
                exps = np.exp(raw - top)
                total = np.cumsum(exps, axis=1)[:, -1:]
                probability = exps * (1.0 / total)
            infinite = np.isposinf(top[:, 0])
            if infinite.any():  # Spark: 1 for the (first) infinite margin, 0 for the others
                hot = np.zeros_like(raw)
                hot[np.arange(n), raw.argmax(axis=1)] = 1.0
                probability[infinite] = hot[infinite]
            prediction = raw.argmax(axis=1).astype(np.float64)
        else:
            margin = margins[:, 0]
            raw = np.column_stack([-margin, margin])
            probability = _sigmoid(raw)
            prediction = (margin > self.raw_threshold).astype(np.float64)
        cols[self.raw_col] = raw
        cols[self.probability_col] = probability
        cols[self.prediction] = prediction


def _dot_rows(x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """x @ coefficients.T, summed feature by feature in order (as Spark's dot does): NaN in a
    feature with a zero coefficient still gives NaN, as in Spark."""
    out = np.zeros((x.shape[0], coefficients.shape[0]))
    for j in range(x.shape[1]):
        out += x[:, j : j + 1] * coefficients[:, j]
    return out


class LinearRegression(Predictor):
    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path) -> None:
        super().__init__(name, meta)
        data = _rows(stage_dir)[0]
        self.coefficients = _vector(data["coefficients"]).reshape(1, -1)
        self.intercept = float(data["intercept"])
        self.scale = float(data.get("scale", 1.0))
        if self.scale != 1.0 or _param(meta, "loss", "squaredError") != "squaredError":
            raise NotConvertible(name, "only the squared-error loss (scale 1) is reproduced")

    def apply(self, cols: dict[str, Any], n: int) -> None:
        cols[self.prediction] = _dot_rows(cols[self.features], self.coefficients)[:, 0] + (
            self.intercept
        )


class Forest:
    """Every tree of an ensemble in flat arrays, walked for all rows and trees at once.

    Continuous splits send ``value <= threshold`` left (NaN goes right); categorical splits
    send a category left as Spark's ``CategoricalSplit`` does: it keeps the smaller side of the
    split, so a value outside the categories goes right when that is the left side, else left.
    """

    def __init__(self, name: str, trees: dict[int, list[dict[str, Any]]]) -> None:
        self.tree_ids = sorted(trees)
        features, thresholds, lefts, rights, leaf = [], [], [], [], []
        is_cat, outside_left, cat_rows, predictions, stats, roots = [], [], [], [], [], []
        offset = 0
        for tree_id in self.tree_ids:
            nodes = sorted(trees[tree_id], key=lambda node: node["id"])
            position = {node["id"]: offset + i for i, node in enumerate(nodes)}
            if 0 not in position:
                raise NotConvertible(name, f"tree {tree_id} has no root node (id 0)")
            roots.append(position[0])
            for node in nodes:
                split = node.get("split") or {}
                internal = node["leftChild"] >= 0
                leaf.append(not internal)
                lefts.append(position[node["leftChild"]] if internal else -1)
                rights.append(position[node["rightChild"]] if internal else -1)
                features.append(int(split.get("featureIndex", -1)) if internal else 0)
                categories = int(split.get("numCategories", -1)) if internal else -1
                values = list(split.get("leftCategoriesOrThreshold") or [0.0])
                predictions.append(float(node["prediction"]))
                stats.append(list(node.get("impurityStats") or []))
                if internal and categories >= 0:
                    is_cat.append(True)
                    thresholds.append(math.nan)
                    outside_left.append(not len(values) <= categories // 2)
                    cat_rows.append((len(is_cat) - 1, categories, {float(v) for v in values}))
                else:
                    is_cat.append(False)
                    thresholds.append(float(values[0]) if internal else math.nan)
                    outside_left.append(False)
            offset += len(nodes)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.feature = np.asarray(features, dtype=np.int64)
        self.threshold = np.asarray(thresholds, dtype=np.float64)
        self.left = np.asarray(lefts, dtype=np.int64)
        self.right = np.asarray(rights, dtype=np.int64)
        self.leaf = np.asarray(leaf, dtype=bool)
        self.is_cat = np.asarray(is_cat, dtype=bool)
        self.outside_left = np.asarray(outside_left, dtype=bool)
        self.prediction = np.asarray(predictions, dtype=np.float64)
        width = max((len(s) for s in stats), default=0)
        self.stats = np.zeros((len(stats), width))
        for i, row in enumerate(stats):
            self.stats[i, : len(row)] = row
        self.num_categories = np.zeros(len(is_cat), dtype=np.int64)
        cat_width = max((c for _, c, _ in cat_rows), default=0)
        self.cat_left = np.zeros((len(is_cat), max(cat_width, 1)), dtype=bool)
        for i, categories, left in cat_rows:
            self.num_categories[i] = categories
            for c in range(categories):
                self.cat_left[i, c] = float(c) in left

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree: rows x trees indexes into the node arrays."""
        n, trees = x.shape[0], len(self.roots)
        node = np.tile(self.roots, n)
        row = np.repeat(np.arange(n), trees)
        while True:
            active = np.nonzero(~self.leaf[node])[0]
            if not len(active):
                return node.reshape(n, trees)
            at = node[active]
            value = x[row[active], self.feature[at]]
            go_left = value <= self.threshold[at]  # NaN compares False: right
            cat = self.is_cat[at]
            if cat.any():
                v, where = value[cat], at[cat]
                inside = (v >= 0) & (v < self.num_categories[where]) & (v == np.floor(v))
                index = np.where(inside, v, 0).astype(np.int64)
                go_left[cat] = np.where(
                    inside, self.cat_left[where, index], self.outside_left[where]
                )
            node[active] = np.where(go_left, self.left[at], self.right[at])


def _trees(stage_dir: Path, name: str) -> tuple[Forest, np.ndarray]:
    """The ensemble's trees and their weights (``data`` + ``treesMetadata``)."""
    trees: dict[int, list[dict[str, Any]]] = {}
    for row in _rows(stage_dir):
        trees.setdefault(int(row["treeID"]), []).append(row["nodeData"])
    weights = {int(r["_1"]): float(r["_3"]) for r in _rows(stage_dir, "treesMetadata")}
    forest = Forest(name, trees)
    return forest, np.asarray([weights[t] for t in forest.tree_ids], dtype=np.float64)


class TreeEnsemble(Predictor):
    """Random forests, gradient-boosted trees and single decision trees, both tasks."""

    def __init__(self, name: str, meta: dict[str, Any], stage_dir: Path, kind: str) -> None:
        super().__init__(name, meta)
        self.kind = kind
        if kind.startswith("tree"):
            self.forest = Forest(name, {0: _rows(stage_dir)})
            self.weights = np.ones(1)
        else:
            self.forest, self.weights = _trees(stage_dir, name)
        if kind == "gbt_classifier" and _param(meta, "lossType", "logistic") != "logistic":
            raise NotConvertible(name, "only the logistic loss is reproduced")

    @property
    def classifier(self) -> bool:
        return self.kind.endswith("classifier")

    def apply(self, cols: dict[str, Any], n: int) -> None:
        leaves = self.forest.leaves(np.asarray(cols[self.features], dtype=np.float64))
        kind, forest = self.kind, self.forest
        if kind in ("forest_regressor", "tree_regressor"):
            total = np.cumsum(forest.prediction[leaves], axis=1)[:, -1]
            cols[self.prediction] = total / leaves.shape[1]
            return
        if kind == "gbt_regressor":
            terms = forest.prediction[leaves] * self.weights
            cols[self.prediction] = np.cumsum(terms, axis=1)[:, -1]
            return
        if kind == "gbt_classifier":
            terms = forest.prediction[leaves] * self.weights
            margin = np.cumsum(terms, axis=1)[:, -1]
            raw = np.column_stack([-margin, margin])
            with np.errstate(over="ignore"):
                p0 = 1.0 / (1.0 + np.exp(-2.0 * raw[:, 0]))
            probability = np.column_stack([p0, 1.0 - p0])
        else:  # forest_classifier: normalised leaf counts summed; tree_classifier: the counts
            counts = forest.stats[leaves]  # rows x trees x classes
            if kind == "forest_classifier":
                totals = counts.sum(axis=2, keepdims=True)
                shares = np.where(totals != 0, counts / np.where(totals == 0, 1, totals), 0.0)
                raw = np.cumsum(shares, axis=1)[:, -1, :]
            else:
                raw = counts[:, 0, :]
            probability = _normalised(raw)
        cols[self.raw_col] = raw
        cols[self.probability_col] = probability
        cols[self.prediction] = raw.argmax(axis=1).astype(np.float64)


_ESTIMATORS = {
    "org.apache.spark.ml.classification.LogisticRegressionModel": None,
    "org.apache.spark.ml.regression.LinearRegressionModel": None,
    "org.apache.spark.ml.classification.RandomForestClassificationModel": "forest_classifier",
    "org.apache.spark.ml.regression.RandomForestRegressionModel": "forest_regressor",
    "org.apache.spark.ml.classification.GBTClassificationModel": "gbt_classifier",
    "org.apache.spark.ml.regression.GBTRegressionModel": "gbt_regressor",
    "org.apache.spark.ml.classification.DecisionTreeClassificationModel": "tree_classifier",
    "org.apache.spark.ml.regression.DecisionTreeRegressionModel": "tree_regressor",
}
CONVERTIBLE = (
    "org.apache.spark.ml.feature.SQLTransformer",
    "org.apache.spark.ml.feature.ImputerModel",
    "org.apache.spark.ml.feature.StringIndexerModel",
    "org.apache.spark.ml.feature.OneHotEncoderModel",
    "org.apache.spark.ml.feature.VectorAssembler",
    "org.apache.spark.ml.feature.IndexToString",
    *_ESTIMATORS,
)


def _stage(stage_dir: Path, position: int) -> Stage:
    meta = _metadata(stage_dir)
    cls = meta.get("class", "?")
    name = f"stage {position} ({cls.rsplit('.', 1)[-1]})"
    short = cls.rsplit(".", 1)[-1]
    if cls == "org.apache.spark.ml.feature.SQLTransformer":
        return SqlCasts(name, meta)
    if cls == "org.apache.spark.ml.feature.ImputerModel":
        return Imputer(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.StringIndexerModel":
        return StringIndexer(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.OneHotEncoderModel":
        return OneHotEncoder(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.VectorAssembler":
        return VectorAssembler(name, meta)
    if cls == "org.apache.spark.ml.feature.IndexToString":
        return IndexToString(name, meta)
    if short == "LogisticRegressionModel":
        return LogisticRegression(name, meta, stage_dir)
    if short == "LinearRegressionModel":
        return LinearRegression(name, meta, stage_dir)
    if cls in _ESTIMATORS:
        return TreeEnsemble(name, meta, stage_dir, _ESTIMATORS[cls])
    raise NotConvertible(name, f"no numpy equivalent for {cls}")


class FastPipeline:
    """A fitted Spark ML pipeline, loaded from its saved directory, scored with numpy."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        inputs: list[str] = []
        for stage in stages:
            inputs += [c for c in stage.inputs if c not in inputs]
        self.input_columns = inputs
        predictors = [s for s in stages if isinstance(s, Predictor)]
        self.predictor = predictors[-1] if predictors else None

    def transform(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Every column the pipeline makes, by name (vectors as 2-D arrays); a column the
        frame lacks is null in every row, as in a batch where it is."""
        n = len(frame)
        cols: dict[str, Any] = {c: frame[c].to_numpy() for c in frame.columns}
        for stage in self.stages:
            stage.apply(cols, n)
        return cols

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """What MLflow's Spark pyfunc returns: the ``prediction`` column as a list."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        values = self.transform(frame.reset_index(drop=True))[PREDICTION]
        if values.dtype == object:
            return list(values)
        return [float(v) for v in values]


def load_pipeline(path: str | os.PathLike[str]) -> FastPipeline:
    """The pipeline Spark saved at ``path``; ``NotConvertible`` names the first stage that is
    not reproduced."""
    root = Path(path)
    meta = _metadata(root)
    if meta.get("class") != "org.apache.spark.ml.PipelineModel":
        raise NotConvertible("the model", f"not a PipelineModel: {meta.get('class')}")
    stages = []
    for position, uid in enumerate(_param(meta, "stageUids", [])):
        found = sorted((root / "stages").glob(f"*_{uid}"))
        if len(found) != 1:
            raise NotConvertible(f"stage {position} ({uid})", "its saved directory is missing")
        stages.append(_stage(found[0], position))
    return FastPipeline(stages)


def switched_off(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(SWITCH, "")
    return value.strip().lower() in OFF_VALUES


def _load_pyfunc(path: str) -> Any:
    """MLflow's pyfunc entry: ``path`` is the model's ``sparkml`` directory."""
    if switched_off():
        import mlflow.spark

        return mlflow.spark._load_pyfunc(path)
    return load_pipeline(path)
