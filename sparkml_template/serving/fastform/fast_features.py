"""The feature stages of the numpy form: the template's SQL casts and date parts, Imputer,
StringIndexer, OneHotEncoder, VectorAssembler and IndexToString, as Spark computes them."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .fast_base import NotConvertible, Stage, _as_double, _date_parts, _param, _rows

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
