"""Yours: the PNG charts a run logs. ``evaluation_charts`` and ``learned_charts`` are the hooks:
add a chart by writing one more PNG into the folder they are given (logged under
``evaluation/`` and ``learned/``).

Drawn on ``contract.figures.new_figure`` (matplotlib's object API, no pyplot global state).
"""

from __future__ import annotations

from pathlib import Path

from sparkml_template.contract.figures import new_figure
from sparkml_template.contract.fitted import Learned
from sparkml_template.contract.names import CLASSIFICATION
from sparkml_template.yours.scoring import ClassificationReport, RegressionReport, Report

TOP_IMPORTANCES = 20  # bars in the feature importance chart


def evaluation_charts(report: Report, folder: Path) -> list[Path]:
    """The charts of an evaluation, written into ``folder``: confusion matrix and (binary) ROC
    curve for classification, predicted-vs-actual and residuals for regression."""
    if report.task != CLASSIFICATION:
        return [
            save_predicted_vs_actual(report, folder / "predicted_vs_actual.png"),
            save_residuals(report, folder / "residuals.png"),
        ]
    charts = [save_confusion_matrix(report, folder / "confusion_matrix.png")]
    if report.roc:
        charts.append(save_roc_curve(report, folder / "roc_curve.png", report.classes[1]))
    return charts


def learned_charts(learned: Learned, folder: Path) -> list[Path]:
    """The charts of what the model learned: a tree ensemble's feature importances."""
    if not learned.importances:
        return []
    return [save_feature_importances(learned, folder / "feature_importances.png")]


def save_confusion_matrix(report: ClassificationReport, path: Path) -> Path:
    """Counts per (actual, predicted) class, darker for larger counts."""
    n = len(report.classes)
    fig = new_figure(2.5 + 0.6 * n, 2.0 + 0.6 * n)
    ax = fig.add_subplot()
    image = ax.imshow(report.confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(n)
    ax.set_xticks(ticks, report.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, report.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    peak = max((max(row) for row in report.confusion), default=0)
    for i, row in enumerate(report.confusion):
        for j, value in enumerate(row):
            colour = "white" if peak and value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=colour)
    ax.set_title(f"confusion matrix (accuracy {report.metrics['accuracy']:.3f})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_roc_curve(report: ClassificationReport, path: Path, positive: str) -> Path:
    """The ROC curve of a binary model, with its area in the title."""
    fig = new_figure(4.5, 4.5)
    ax = fig.add_subplot()
    fpr = [p[0] for p in report.roc]
    tpr = [p[1] for p in report.roc]
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {report.metrics['areaUnderROC']:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel(f"true positive rate (positive class: {positive})")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_predicted_vs_actual(report: RegressionReport, path: Path) -> Path:
    """Each row's prediction against its label, with the line where they are equal."""
    fig = new_figure(4.5, 4.5)
    ax = fig.add_subplot()
    actual = [p[0] for p in report.points]
    predicted = [p[1] for p in report.points]
    ax.scatter(actual, predicted, s=8, alpha=0.5, color="tab:blue")
    if actual:
        low, high = min(actual + predicted), max(actual + predicted)
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"predicted vs actual (r2 {report.metrics['r2']:.3f}, {len(actual)} rows)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_residuals(report: RegressionReport, path: Path) -> Path:
    """Residuals (predicted - actual) against the prediction: a pattern means a missed shape."""
    fig = new_figure(5.0, 4.0)
    ax = fig.add_subplot()
    predicted = [p[1] for p in report.points]
    residuals = [p[1] - p[0] for p in report.points]
    ax.scatter(predicted, residuals, s=8, alpha=0.5, color="tab:orange")
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (predicted - actual)")
    ax.set_title(f"residuals (rmse {report.metrics['rmse']:.3g})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_feature_importances(learned: Learned, path: Path) -> Path:
    """The largest feature importances of a tree ensemble as horizontal bars, largest on top."""
    names = learned.importances["feature"][:TOP_IMPORTANCES]
    weights = learned.importances["importance"][:TOP_IMPORTANCES]
    fig = new_figure(6.0, 1.5 + 0.3 * len(names))
    ax = fig.add_subplot()
    ax.barh(range(len(names)), weights, color="tab:green")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("importance (sums to 1 over all features)")
    total = len(learned.importances["feature"])
    ax.set_title(f"feature importances (top {len(names)} of {total})")
    fig.tight_layout()
    fig.savefig(path)
    return path
