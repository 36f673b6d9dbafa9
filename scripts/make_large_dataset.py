"""Generate the benchmark's large dataset: N rows shaped like the shipped breast-cancer data.

Rows are drawn from the shipped file with replacement and every feature is jittered by 5 % of
its standard deviation, so the classes stay learnable and no two rows are identical. Written as
Parquet (no schema inference pass) to ``bench-data/breast_cancer_<N>.parquet``.

    python scripts/make_large_dataset.py --rows 1000000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "breast_cancer.csv"
LABEL = "diagnosis"


def make(rows: int, seed: int = 7) -> Path:
    """Write the dataset (once; an existing file of that size is reused) and return its path."""
    out = ROOT / "bench-data" / f"breast_cancer_{rows}_rg.parquet"
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    base = pd.read_csv(SHIPPED)
    picked = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    features = picked.drop(columns=[LABEL])
    noise = rng.normal(0.0, 1.0, features.shape) * (0.05 * base.drop(columns=[LABEL]).std().values)
    frame = features + noise
    frame[LABEL] = picked[LABEL].values
    out.parent.mkdir(exist_ok=True)
    # Row groups of 64k rows: Spark splits a file at row-group boundaries only, and one group
    # would leave every core but one idle.
    frame.to_parquet(out, index=False, row_group_size=65_536)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    print(make(parser.parse_args().rows))


if __name__ == "__main__":
    main()
