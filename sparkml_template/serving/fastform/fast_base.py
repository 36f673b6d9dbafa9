"""What every stage of the numpy form shares: reading what Spark ML saved, nulls and casts as
Spark makes them, and the ``Stage`` interface."""

from __future__ import annotations

import datetime as dt
import json
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
