"""Regenerate data/breast_cancer.csv from the copy of the Wisconsin data that scikit-learn ships.

Run it with `python data/make_dataset.py`; it needs no network. Column names are snake_case and
the label is the diagnosis as a string ("malignant"/"benign"), so the template's string-label path
(index on the way in, original strings on the way out) is exercised by the default run.
"""

from __future__ import annotations

import re
from pathlib import Path

from sklearn.datasets import load_breast_cancer

OUT = Path(__file__).resolve().parent / "breast_cancer.csv"


def snake_case(name: str) -> str:
    """'mean radius' -> 'mean_radius'."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def main() -> None:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.rename(columns=snake_case)
    frame["diagnosis"] = bunch.target.map(dict(enumerate(bunch.target_names)))
    frame.to_csv(OUT, index=False, float_format="%.6g", lineterminator="\n")
    print(f"wrote {len(frame)} rows to {OUT}")


if __name__ == "__main__":
    main()
