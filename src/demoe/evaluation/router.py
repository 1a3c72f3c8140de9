"""Router study (paper Sec. 4.2, App. E, Fig. 12): how well the router recognises the blur type.

Pure functions over arrays: router probabilities (N, E) (softmax rows), true class labels (N,)
(task index, `PairRecord.label`) and dataset names (N,). The prediction is the arg-max class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _check(probs: np.ndarray, labels: np.ndarray, datasets: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, E), got shape {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must be ({probs.shape[0]},), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}")
    if datasets is not None and len(datasets) != probs.shape[0]:
        raise ValueError(f"got {len(datasets)} dataset names for {probs.shape[0]} rows")
    return probs, labels.astype(np.int64)


def confusion_matrix(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(E, E) int counts: row = true class, column = predicted (arg-max) class.

    probs: (N, E) router output; labels: (N,) true class indices.
    """
    probs, labels = _check(probs, labels)
    num_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the label, in [0, 1]."""
    probs, labels = _check(probs, labels)
    if labels.size == 0:
        raise ValueError("no rows")
    return float((probs.argmax(axis=1) == labels).mean())


def _groups(datasets: Sequence[str]) -> dict[str, np.ndarray]:
    """{dataset: row indices}, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(datasets):
        groups.setdefault(name, []).append(index)
    return {name: np.array(rows) for name, rows in groups.items()}


def accuracy_per_dataset(probs: np.ndarray, labels: np.ndarray, datasets: Sequence[str]) -> dict[str, float]:
    """{dataset: router accuracy on its rows}, datasets in order of first appearance."""
    probs, labels = _check(probs, labels, datasets)
    return {name: accuracy(probs[rows], labels[rows]) for name, rows in _groups(datasets).items()}


def mean_output_per_dataset(probs: np.ndarray, datasets: Sequence[str]) -> dict[str, np.ndarray]:
    """{dataset: (E,) mean router probabilities over its rows} (Fig. 12)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(datasets) != probs.shape[0]:
        raise ValueError(f"probs must be (N, E) with N = len(datasets), got {probs.shape} and {len(datasets)}")
    return {name: probs[rows].mean(axis=0) for name, rows in _groups(datasets).items()}


@dataclass(frozen=True)
class RouterStudy:
    class_names: tuple[str, ...]  # router classes (task names), length E
    count: dict[str, int]  # images per dataset
    accuracy: dict[str, float]  # per dataset
    overall_accuracy: float
    confusion: np.ndarray  # (E, E) int, rows true class, columns predicted
    mean_output: dict[str, np.ndarray]  # per dataset, (E,)

    def to_dict(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "overall_accuracy": self.overall_accuracy,
            "datasets": [
                {
                    "dataset": name,
                    "count": self.count[name],
                    "accuracy": self.accuracy[name],
                    "mean_output": {c: float(v) for c, v in zip(self.class_names, self.mean_output[name])},
                }
                for name in self.accuracy
            ],
            "confusion": {"rows": "true class", "columns": "predicted class", "matrix": self.confusion.tolist()},
        }

    def to_markdown(self) -> str:
        lines = [
            "| Dataset | Images | Accuracy | " + " | ".join(self.class_names) + " |",
            "|---|---:|---:|" + "---:|" * len(self.class_names),
        ]
        for name in self.accuracy:
            means = " | ".join(f"{v:.3f}" for v in self.mean_output[name])
            lines.append(f"| {name} | {self.count[name]} | {self.accuracy[name]:.3f} | {means} |")
        lines.append(f"\nOverall accuracy: {self.overall_accuracy:.3f}\n")
        lines.append("Confusion matrix (rows: true class, columns: predicted class)\n")
        lines.append("| true \\ predicted | " + " | ".join(self.class_names) + " |")
        lines.append("|---|" + "---:|" * len(self.class_names))
        for name, row in zip(self.class_names, self.confusion):
            lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
        return "\n".join(lines) + "\n"


def router_study(probs: np.ndarray, labels: np.ndarray, datasets: Sequence[str], class_names: Sequence[str]) -> RouterStudy:
    """All router statistics at once. probs (N, E), labels (N,), datasets (N,), E class names."""
    probs, labels = _check(probs, labels, datasets)
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"got {len(class_names)} class names for {probs.shape[1]} classes")
    groups = _groups(datasets)
    return RouterStudy(
        class_names=tuple(class_names),
        count={name: int(rows.size) for name, rows in groups.items()},
        accuracy=accuracy_per_dataset(probs, labels, datasets),
        overall_accuracy=accuracy(probs, labels),
        confusion=confusion_matrix(probs, labels),
        mean_output=mean_output_per_dataset(probs, datasets),
    )
