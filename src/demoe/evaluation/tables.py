"""Result tables in the layout of the paper's Table 1 / Table 2, from per-image result rows.

A row is one image evaluated by one method (or variant):

    {"dataset": "GoPro", "method": "DeMoE k=1", "psnr": 30.1, "ssim": 0.90, "lpips": 0.17}

Metric keys are those of `METRICS`; a missing or None metric is skipped. The table has one
line per method and one column per dataset holding the per-image means of that dataset's
metrics ("PSNR / SSIM / LPIPS"), plus an "Average" column: the mean over datasets of the
per-dataset means (as in the paper, where every dataset weighs the same), for the metrics that
every dataset has. Variants are distinct method labels: `method_label("DeMoE", top_k=1,
manual=True)` = "DeMoE† k=1" (the paper's dagger: expert chosen by hand, not by the router).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class MetricSpec:
    title: str  # column title
    higher_is_better: bool
    decimals: int

    @property
    def header(self) -> str:
        return f"{self.title}{'↑' if self.higher_is_better else '↓'}"


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("PSNR", True, 2),
    "ssim": MetricSpec("SSIM", True, 3),
    "lpips": MetricSpec("LPIPS", False, 3),
    "mae": MetricSpec("MAE", False, 4),
    "musiq": MetricSpec("MUSIQ", True, 2),
    "nrqm": MetricSpec("NRQM", True, 3),
    "niqe": MetricSpec("NIQE", False, 3),
}
MANUAL_MARK = "†"  # the paper's dagger: expert selected manually


def method_label(name: str, top_k: int | None = None, manual: bool = False) -> str:
    """Row label of a variant: method_label("DeMoE", 1) = "DeMoE k=1",
    method_label("DeMoE", 1, manual=True) = "DeMoE† k=1"."""
    label = name + (MANUAL_MARK if manual else "")
    return label if top_k is None else f"{label} k={top_k}"


@dataclass(frozen=True)
class Cell:
    means: dict[str, float]  # metric -> mean over the dataset's images
    count: int  # images


@dataclass(frozen=True)
class CostEntry:
    params: int
    macs_g: float
    latency_ms: float


@dataclass(frozen=True)
class ResultTable:
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: dict[str, tuple[str, ...]]  # dataset -> metric keys shown, in METRICS order
    cells: dict[tuple[str, str], Cell]  # (method, dataset) -> cell; absent = not evaluated
    average_metrics: tuple[str, ...]  # metrics every dataset has
    costs: dict[str, CostEntry] = field(default_factory=dict)  # method -> cost (optional column)

    def average(self, method: str) -> dict[str, float] | None:
        """Mean over datasets of the per-dataset means; None if the method misses a dataset."""
        if not self.average_metrics or any((method, d) not in self.cells for d in self.datasets):
            return None
        result = {}
        for metric in self.average_metrics:
            values = [self.cells[(method, d)].means.get(metric, math.nan) for d in self.datasets]
            result[metric] = sum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan
        return result


def build_table(
    rows: Iterable[Mapping[str, Any]],
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    costs: Mapping[str, Any] | None = None,
) -> ResultTable:
    """Aggregate per-image rows into a table.

    datasets / methods: column / line order (default: order of first appearance); names given
    here but absent from the rows are kept as empty columns / lines. costs: {method: object
    with params, macs_g, latency_ms} (e.g. `demoe.evaluation.cost.Cost`) for the cost column.
    """
    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    counts: dict[tuple[str, str], int] = {}
    seen_datasets: dict[str, None] = {}
    seen_methods: dict[str, None] = {}
    for number, row in enumerate(rows):
        for key in ("dataset", "method"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"row {number} needs a string {key!r}, got {row.get(key)!r}")
        key = (row["method"], row["dataset"])
        seen_methods.setdefault(row["method"])
        seen_datasets.setdefault(row["dataset"])
        counts[key] = counts.get(key, 0) + 1
        values = sums.setdefault(key, {})
        for metric in METRICS:
            value = row.get(metric)
            if value is not None and math.isfinite(float(value)):
                values.setdefault(metric, []).append(float(value))
    dataset_order = tuple(datasets) if datasets is not None else tuple(seen_datasets)
    method_order = tuple(methods) if methods is not None else tuple(seen_methods)
    cells = {
        key: Cell({metric: sum(v) / len(v) for metric, v in values.items()}, counts[key])
        for key, values in sums.items()
        if key[0] in method_order and key[1] in dataset_order
    }
    metrics = {
        dataset: tuple(
            metric for metric in METRICS
            if any(metric in cell.means for (m, d), cell in cells.items() if d == dataset)
        )
        for dataset in dataset_order
    }
    shared = set.intersection(*(set(m) for m in metrics.values())) if metrics else set()
    average_metrics = tuple(metric for metric in METRICS if metric in shared) if len(dataset_order) > 1 else ()
    cost_entries = {
        method: CostEntry(int(cost.params), float(cost.macs_g), float(cost.latency_ms))
        for method, cost in (costs or {}).items()
    }
    return ResultTable(dataset_order, method_order, metrics, cells, average_metrics, cost_entries)


def _format(metric: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{METRICS[metric].decimals}f}"


def _ranks(values: dict[str, float], higher_is_better: bool) -> dict[str, int]:
    """1 for the best value(s), 2 for the second best, 0 otherwise."""
    finite = sorted({v for v in values.values() if math.isfinite(v)}, reverse=higher_is_better)
    ranks = {}
    for method, value in values.items():
        if math.isfinite(value) and value == finite[0]:
            ranks[method] = 1
        elif len(finite) > 1 and math.isfinite(value) and value == finite[1]:
            ranks[method] = 2
        else:
            ranks[method] = 0
    return ranks


def _columns(table: ResultTable) -> list[tuple[str, tuple[str, ...]]]:
    columns = [(dataset, table.metrics[dataset]) for dataset in table.datasets]
    if table.average_metrics:
        columns.append(("Average", table.average_metrics))
    return columns


def _column_values(table: ResultTable, column: str, metric: str) -> dict[str, float]:
    values = {}
    for method in table.methods:
        if column == "Average":
            average = table.average(method)
            values[method] = average[metric] if average else math.nan
        else:
            cell = table.cells.get((method, column))
            values[method] = cell.means.get(metric, math.nan) if cell else math.nan
    return values


def to_markdown(table: ResultTable, highlight: bool = True) -> str:
    """The table as GitHub markdown; cells "PSNR / SSIM / LPIPS". With `highlight`, the best
    value of each metric and column is bold and (with 3 or more methods) the second underlined."""
    columns = _columns(table)
    header = ["Method"]
    if table.costs:
        header.append("Params (M) / MACs (G) / Runtime (ms)")
    header += [f"{name}<br>{' / '.join(METRICS[m].header for m in metrics)}" for name, metrics in columns]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    ranks = {
        (name, metric): _ranks(_column_values(table, name, metric), METRICS[metric].higher_is_better)
        for name, metrics in columns
        for metric in metrics
    }
    for method in table.methods:
        line = [method]
        if table.costs:
            cost = table.costs.get(method)
            line.append(f"{cost.params / 1e6:.2f} / {cost.macs_g:.2f} / {cost.latency_ms:.1f}" if cost else "-")
        for name, metrics in columns:
            parts = []
            for metric in metrics:
                value = _column_values(table, name, metric)[method]
                text = _format(metric, value)
                rank = ranks[(name, metric)][method] if highlight and text != "-" else 0
                if rank == 1 and len(table.methods) > 1:
                    text = f"**{text}**"
                elif rank == 2 and len(table.methods) > 2:
                    text = f"<u>{text}</u>"
                parts.append(text)
            line.append(" / ".join(parts) if parts else "-")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"


def to_markdown_averages(table: ResultTable, highlight: bool = True) -> str:
    """Table 7's layout: one line per method, its cost (when known) and the mean over the
    datasets of each metric every dataset has; best bold, second underlined."""
    metrics = table.average_metrics or next(iter(table.metrics.values()), ())
    averages = {}
    for method in table.methods:
        if table.average_metrics:
            averages[method] = table.average(method) or {}
        else:  # one dataset: its means
            cell = table.cells.get((method, table.datasets[0])) if table.datasets else None
            averages[method] = cell.means if cell else {}
    header = ["Method", "Params (M)", "MACs (G)", "Runtime (ms)", *(METRICS[m].header for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    ranks = {
        metric: _ranks({m: averages[m].get(metric, math.nan) for m in table.methods}, METRICS[metric].higher_is_better)
        for metric in metrics
    }
    for method in table.methods:
        cost = table.costs.get(method)
        line = [method, *(
            (f"{cost.params / 1e6:.2f}", f"{cost.macs_g:.2f}", f"{cost.latency_ms:.1f}") if cost else ("-", "-", "-")
        )]
        for metric in metrics:
            text = _format(metric, averages[method].get(metric))
            rank = ranks[metric][method] if highlight and text != "-" else 0
            if rank == 1 and len(table.methods) > 1:
                text = f"**{text}**"
            elif rank == 2 and len(table.methods) > 2:
                text = f"<u>{text}</u>"
            line.append(text)
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: ResultTable) -> str:
    """One line per method; columns "<dataset>/<metric>", "<dataset>/count", "Average/<metric>"
    and, with costs, "params", "macs_g", "latency_ms". Full precision; empty = not evaluated."""
    columns = _columns(table)
    header = ["method"]
    for name, metrics in columns:
        header += [f"{name}/{metric}" for metric in metrics]
        if name != "Average":
            header.append(f"{name}/count")
    if table.costs:
        header += ["params", "macs_g", "latency_ms"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for method in table.methods:
        line: list[Any] = [method]
        for name, metrics in columns:
            for metric in metrics:
                value = _column_values(table, name, metric)[method]
                line.append(repr(value) if math.isfinite(value) else "")
            if name != "Average":
                cell = table.cells.get((method, name))
                line.append(cell.count if cell else "")
        if table.costs:
            cost = table.costs.get(method)
            line += [cost.params, cost.macs_g, cost.latency_ms] if cost else ["", "", ""]
        writer.writerow(line)
    return buffer.getvalue()


def to_json(table: ResultTable) -> dict:
    """{"datasets", "metrics": {dataset: [...]}, "average_metrics", "rows": [{"method",
    "results": {dataset: {metric: mean, "count": n}}, "average": {...} | null, "cost": {...}?}]}."""
    rows = []
    for method in table.methods:
        results = {}
        for dataset in table.datasets:
            cell = table.cells.get((method, dataset))
            if cell is not None:
                results[dataset] = {**{m: _finite_or_none(cell.means.get(m)) for m in table.metrics[dataset]}, "count": cell.count}
        average = table.average(method)
        row: dict[str, Any] = {
            "method": method,
            "results": results,
            "average": {m: _finite_or_none(v) for m, v in average.items()} if average else None,
        }
        if method in table.costs:
            cost = table.costs[method]
            row["cost"] = {"params": cost.params, "macs_g": cost.macs_g, "latency_ms": cost.latency_ms}
        rows.append(row)
    return {
        "datasets": list(table.datasets),
        "metrics": {d: list(m) for d, m in table.metrics.items()},
        "average_metrics": list(table.average_metrics),
        "rows": rows,
    }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
