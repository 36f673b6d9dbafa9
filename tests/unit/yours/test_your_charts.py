"""Your charts (yours/charts.py) from reports and learned tables built by hand: each hook writes
the PNGs its task calls for, each a real image of the size its chart asks for."""

from __future__ import annotations

import struct
from pathlib import Path

from sparkml_template.contract.fitted import Learned
from sparkml_template.yours.charts import (
    TOP_IMPORTANCES,
    evaluation_charts,
    learned_charts,
    save_residuals,
)
from sparkml_template.yours.scoring import RegressionReport, report_from_counts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's header chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def _binary_report():
    report = report_from_counts(
        {("no", "no"): 4, ("no", "yes"): 2, ("yes", "yes"): 3}, ["no", "yes"]
    )
    report.metrics["areaUnderROC"] = 0.75
    report.roc = [(0.0, 0.0), (0.25, 0.5), (1.0, 1.0)]
    return report


def test_a_binary_classification_gets_a_confusion_matrix_and_a_roc_curve(tmp_path):
    charts = evaluation_charts(_binary_report(), tmp_path)
    assert [p.name for p in charts] == ["confusion_matrix.png", "roc_curve.png"]
    assert _png_size(charts[0]) == (370, 320)  # grows with the number of classes
    assert _png_size(charts[1]) == (450, 450)


def test_a_multiclass_report_has_no_roc_curve(tmp_path):
    counts = {("a", "a"): 3, ("b", "c"): 1, ("c", "c"): 2}
    charts = evaluation_charts(report_from_counts(counts, ["a", "b", "c"]), tmp_path)
    assert [p.name for p in charts] == ["confusion_matrix.png"]
    assert _png_size(charts[0]) == (430, 380)


def test_a_regression_gets_predicted_vs_actual_and_residuals(tmp_path):
    points = [(1.0, 1.5), (2.0, 2.0), (3.0, 2.5), (4.0, 5.0)]
    report = RegressionReport({"rmse": 0.61, "mae": 0.5, "r2": 0.7}, rows=4, points=points)
    charts = evaluation_charts(report, tmp_path)
    assert [p.name for p in charts] == ["predicted_vs_actual.png", "residuals.png"]
    assert [_png_size(p) for p in charts] == [(450, 450), (500, 400)]


def test_a_regression_without_points_still_draws(tmp_path):
    empty = RegressionReport({"rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}, 0)
    path = save_residuals(empty, tmp_path / "residuals.png")
    assert _png_size(path) == (500, 400)


def test_feature_importances_show_the_largest_few(tmp_path):
    assert learned_charts(Learned(), tmp_path) == []  # a linear model: no importances
    n = TOP_IMPORTANCES + 5
    importances = {"feature": [f"f{i}" for i in range(n)], "importance": [1 / n] * n}
    (chart,) = learned_charts(Learned(importances=importances), tmp_path)
    assert chart.name == "feature_importances.png"
    assert _png_size(chart) == (600, round(100 * (1.5 + 0.3 * TOP_IMPORTANCES)))
