"""Generate the benchmarks' large datasets: N rows shaped like a small real table.

``breast_cancer`` (classification, the shipped file, label ``diagnosis``) and ``diabetes``
(regression, scikit-learn's ``load_diabetes``, no download, label ``target``). Rows are drawn
with replacement and every feature (and the regression label) is jittered by 5 % of its
standard deviation, so the task stays learnable and no two rows are identical. Written as
Parquet (no schema inference pass) to ``bench-data/<kind>_<N>_rg.parquet``.

    python scripts/make_large_dataset.py --rows 1000000
    python scripts/make_large_dataset.py --rows 1000000 --kind diabetes
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "breast_cancer.csv"
LABELS = {"breast_cancer": "diagnosis", "diabetes": "target"}


def _source(kind: str) -> pd.DataFrame:
    if kind == "breast_cancer":
        return pd.read_csv(SHIPPED)
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame


def make(rows: int, seed: int = 7, kind: str = "breast_cancer") -> Path:
    """Write the dataset (once; an existing file of that size is reused) and return its path."""
    out = ROOT / "bench-data" / f"{kind}_{rows}_rg.parquet"
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    base = _source(kind)
    label = LABELS[kind]
    picked = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    numeric = picked.select_dtypes("number").columns  # the regression label is jittered too
    std = base[numeric].std().values
    frame = picked.copy()
    frame[numeric] = picked[numeric] + rng.normal(0.0, 1.0, (rows, len(numeric))) * (0.05 * std)
    frame = frame[[c for c in frame.columns if c != label] + [label]]
    out.parent.mkdir(exist_ok=True)
    # Row groups of 64k rows: Spark splits a file at row-group boundaries only, and one group
    # would leave every core but one idle.
    frame.to_parquet(out, index=False, row_group_size=65_536)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--kind", choices=sorted(LABELS), default="breast_cancer")
    args = parser.parse_args()
    print(make(args.rows, kind=args.kind))


if __name__ == "__main__":
    main()
