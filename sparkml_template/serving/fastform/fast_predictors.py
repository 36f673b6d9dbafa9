"""The estimators of the numpy form: linear and logistic regression, decision trees, random
forests and gradient-boosted trees, with Spark's own arithmetic and decision rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .fast_base import NotConvertible, Stage, _matrix, _param, _rows, _vector


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
