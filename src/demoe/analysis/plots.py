"""PNG figures of the analyses (matplotlib's object API with the Agg canvas: no pyplot, no
global state, no display needed).

- `plot_layer_bars`: per-layer similarity bars, one panel per layer type, with the 0.7
  "high correlation" line (paper Fig. 2 / 7 / 11).
- `plot_heatmaps`: annotated similarity matrices (Fig. 9), one panel per title.
- `plot_confusion`, `plot_mean_router_output`: the router study (Fig. 12).
- `plot_tsne`: 2-D embedding coloured by dataset (Fig. 4 / 13).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from demoe.analysis.similarity import LAYER_TYPES, LayerSimilarity
from demoe.fileio import atomic_write

HIGH_CORRELATION = 0.7  # Asuero et al. (2006), the red line of the paper's Fig. 2 / 7
_TYPE_TITLES = {"conv1x1": "1x1 convolutions", "conv3x3": "3x3 convolutions", "norm": "layer norms", "sca": "SCA"}
_ABBREVIATIONS = ((r"^encoders\.", "enc"), (r"^decoders\.", "dec"), (r"^decoder_moes\.", "dmoe"),
                  (r"^middle_moe\.", "mmoe."), (r"^middle\.", "mid"), (r"experts\.\*\.", ""),
                  (r"\.weight$", ""), (r"sca\.proj", "sca"))


def short_layer_name(name: str) -> str:
    """A compact axis label: "encoders.0.1.conv2.weight" -> "enc0.1.conv2"."""
    for pattern, replacement in _ABBREVIATIONS:
        name = re.sub(pattern, replacement, name)
    return name


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(figure)
    return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=100))


def plot_layer_bars(
    series: Mapping[str, Sequence[LayerSimilarity]],
    metric: str,
    path: str | os.PathLike,
    title: str = "",
    line: float | None = HIGH_CORRELATION,
) -> Path:
    """Grouped bars of `metric` ("pearson" | "cka") per layer, one panel per layer type.

    series: {label (e.g. "A vs B"): layer similarities, all over the same layers}. Undefined
    (NaN) values are drawn as missing bars. `line` draws a dashed red reference line.
    """
    if metric not in ("pearson", "cka"):
        raise ValueError(f"metric must be 'pearson' or 'cka', got {metric!r}")
    if not series:
        raise ValueError("nothing to plot: no series")
    labels = list(series)
    first = list(series[labels[0]])
    kinds = [kind for kind in LAYER_TYPES if any(layer.type == kind for layer in first)]
    widest = max(sum(layer.type == kind for layer in first) for kind in kinds)
    width = min(60.0, max(6.0, 0.18 * widest * max(1, len(labels)) + 2))
    figure = Figure(figsize=(width, 2.8 * len(kinds)), layout="constrained")
    axes = figure.subplots(len(kinds), 1, squeeze=False)[:, 0]
    bar_width = 0.8 / len(labels)
    for axis, kind in zip(axes, kinds):
        indices = [i for i, layer in enumerate(first) if layer.type == kind]
        positions = np.arange(len(indices))
        for offset, label in enumerate(labels):
            values = [getattr(list(series[label])[i], metric) for i in indices]
            axis.bar(positions + (offset - (len(labels) - 1) / 2) * bar_width, values, bar_width, label=label)
        if line is not None:
            axis.axhline(line, color="red", linestyle="--", linewidth=1)
        axis.set_xticks(positions, [short_layer_name(first[i].name) for i in indices], rotation=90, fontsize=7)
        axis.set_ylim(min(-0.1, _finite_min(axis)), 1.05)
        axis.set_ylabel("Pearson r" if metric == "pearson" else "CKA (RBF)")
        axis.set_title(_TYPE_TITLES[kind], fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    if len(labels) > 1:
        axes[0].legend(fontsize=7, ncols=min(len(labels), 5), loc="lower left")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _finite_min(axis) -> float:
    heights = [patch.get_height() for patch in axis.patches if math.isfinite(patch.get_height())]
    return min(heights, default=0.0) - 0.05


def plot_heatmaps(
    matrices: Mapping[str, np.ndarray],
    labels: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Path:
    """One annotated (M, M) heat map per entry of `matrices` (e.g. per layer type), rows and
    columns labelled with `labels`. NaN cells stay blank."""
    if not matrices:
        raise ValueError("nothing to plot: no matrices")
    for name, matrix in matrices.items():
        if np.shape(matrix) != (len(labels), len(labels)):
            raise ValueError(f"matrix {name!r} has shape {np.shape(matrix)}, expected ({len(labels)}, {len(labels)})")
    columns = min(4, len(matrices))
    rows = math.ceil(len(matrices) / columns)
    side = 1.2 + 0.55 * len(labels)
    figure = Figure(figsize=(side * columns + 1, side * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    image = None
    for axis, (name, matrix) in zip(axes, matrices.items()):
        matrix = np.asarray(matrix, dtype=float)
        image = axis.imshow(matrix, vmin=vmin, vmax=vmax, cmap="viridis")
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_title(name, fontsize=9)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if math.isfinite(matrix[i, j]):
                    color = "black" if matrix[i, j] > (vmin + vmax) / 2 else "white"
                    axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    for axis in axes[len(matrices):]:
        axis.set_axis_off()
    figure.colorbar(image, ax=list(axes[: len(matrices)]), shrink=0.8)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "Router confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows true class, columns predicted), counts annotated."""
    confusion = np.asarray(confusion)
    if confusion.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion has shape {confusion.shape}, expected {len(class_names)} x {len(class_names)}")
    totals = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    figure = Figure(figsize=(1.5 + 0.9 * len(class_names), 1.2 + 0.8 * len(class_names)), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            color = "white" if rates[i, j] > 0.5 else "black"
            axis.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8, color=color)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, label="fraction of the true class")
    return _save(figure, path)


def plot_mean_router_output(
    mean_output: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Mean router output per dataset",
) -> Path:
    """Grouped bars: per dataset, the mean router probability of each class (Fig. 12)."""
    if not mean_output:
        raise ValueError("nothing to plot: no datasets")
    datasets = list(mean_output)
    figure = Figure(figsize=(max(5.0, 1.3 * len(datasets) + 2), 3.6), layout="constrained")
    axis = figure.subplots()
    positions = np.arange(len(datasets))
    bar_width = 0.8 / len(class_names)
    for index, name in enumerate(class_names):
        values = [float(mean_output[d][index]) for d in datasets]
        axis.bar(positions + (index - (len(class_names) - 1) / 2) * bar_width, values, bar_width, label=name)
    axis.set_xticks(positions, datasets, fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("mean router probability")
    axis.legend(fontsize=7, title="expert", title_fontsize=7)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_tsne(coords: np.ndarray, datasets: Sequence[str], path: str | os.PathLike, title: str = "t-SNE of encoder features") -> Path:
    """Scatter of (N, 2) embedded points, one colour per dataset."""
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] != len(datasets):
        raise ValueError(f"coords must be (N, 2) with N = len(datasets), got {coords.shape} and {len(datasets)}")
    figure = Figure(figsize=(6.0, 5.0), layout="constrained")
    axis = figure.subplots()
    names = list(dict.fromkeys(datasets))
    labels = np.array(datasets)
    for name in names:
        chosen = labels == name
        axis.scatter(coords[chosen, 0], coords[chosen, 1], s=10, alpha=0.8, label=f"{name} ({int(chosen.sum())})")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=7, markerscale=1.5)
    axis.set_title(title, fontsize=10)
    return _save(figure, path)
