"""The paper's comparison tables from `demoe eval` runs: Table 1 (per-dataset PSNR / SSIM /
LPIPS with a cost column) and Table 7 (cost and averages over the datasets, one line per
expert block).

A run is the output folder (`-o`) of one `demoe eval`: `per_image.jsonl` (one row per image and
variant) and, with `demoe eval --cost`, `cost.json` ({label: {params, macs_g, latency_ms}},
the cost of each variant of the table, measured once for the model). `combine_runs` puts
several runs into one `ResultTable`; `render` writes it in either layout.

Example:
    demoe eval --weights runs/restormer/last --manifest aio.jsonl --name Restormer --cost -o results/restormer
    demoe eval --weights runs/demoe/last --manifest aio.jsonl --name DeMoE --cost -o results/demoe
    demoe eval --combine results/restormer results/demoe --layout table1
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

from demoe.evaluation.cost import Cost, count_macs, count_macs_of_config, count_parameters, measure_latency_ms
from demoe.evaluation.tables import ResultTable, build_table, to_csv, to_json, to_markdown, to_markdown_averages
from demoe.fileio import atomic_write
from demoe.model import DeblurNetwork

Layout = Literal["table1", "table7"]
LAYOUTS: tuple[str, ...] = ("table1", "table7")
COST_FILE = "cost.json"
ROWS_FILE = "per_image.jsonl"


def model_cost(
    model: DeblurNetwork, top_k: int | None = 1, size: int = 256, repeats: int = 10, device: str = "cpu"
) -> Cost:
    """Parameters, MACs (at size x size; top-1 and dense models counted on the meta device) and
    median latency over `repeats` forward passes on `device` of one (1, 3, size, size) input."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    config = model.config
    top = top_k if config.is_moe else None
    if top in (None, 1):
        macs = count_macs_of_config(config, size)
    else:
        macs = count_macs(model, size, top)  # top-k > 1 depends on the routing: run it
    latency = measure_latency_ms(model, size, top, repeats=repeats, device=device)
    return Cost(params=count_parameters(model), macs_g=macs, latency_ms=latency)


def write_costs(directory: str | os.PathLike, costs: dict[str, Cost]) -> Path:
    path = Path(directory) / COST_FILE
    text = json.dumps({label: cost.to_dict() for label, cost in costs.items()}, indent=2) + "\n"
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def read_run(directory: str | os.PathLike) -> tuple[list[dict], dict[str, Cost]]:
    """The per-image rows (with "dataset" = the row's group) and the costs of one eval run."""
    directory = Path(directory)
    rows_path = directory / ROWS_FILE
    if not rows_path.is_file():
        raise FileNotFoundError(f"{directory} is not a `demoe eval -o` folder: no {ROWS_FILE}")
    rows = []
    for number, line in enumerate(rows_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{rows_path}, line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("method"), str) or not isinstance(row.get("group"), str):
            raise ValueError(f"{rows_path}, line {number}: a row needs string 'method' and 'group' fields")
        rows.append({**row, "dataset": row["group"]})
    costs: dict[str, Cost] = {}
    cost_path = directory / COST_FILE
    if cost_path.is_file():
        try:
            values = json.loads(cost_path.read_text())
            costs = {label: Cost(int(v["params"]), float(v["macs_g"]), float(v["latency_ms"])) for label, v in values.items()}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{cost_path}: expected {{label: {{params, macs_g, latency_ms}}}} ({error})") from None
    return rows, costs


def combine_runs(directories: Sequence[str | os.PathLike], datasets: Sequence[str] | None = None) -> ResultTable:
    """One table of every method of every run, in the order given. A method label that two runs
    both use is an error (give the runs different `demoe eval --name`s)."""
    if not directories:
        raise ValueError("no eval runs given")
    rows: list[dict] = []
    costs: dict[str, Cost] = {}
    owners: dict[str, str] = {}
    methods: list[str] = []
    for directory in directories:
        run_rows, run_costs = read_run(directory)
        for method in dict.fromkeys(row["method"] for row in run_rows):
            if method in owners:
                raise ValueError(f"method {method!r} is in both {owners[method]} and {directory}; rename one with --name")
            owners[method] = str(directory)
            methods.append(method)
        rows += run_rows
        costs.update(run_costs)
    return build_table(rows, datasets=datasets, methods=methods, costs=costs)


def render(table: ResultTable, layout: Layout = "table1") -> str:
    """Markdown in the layout of Table 1 (per dataset, cost column) or Table 7 (averages)."""
    if layout == "table1":
        return to_markdown(table)
    if layout == "table7":
        return to_markdown_averages(table)
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def write_tables(table: ResultTable, directory: str | os.PathLike, layout: Layout = "table1") -> list[Path]:
    """<layout>.md (`render`), <layout>.csv and <layout>.json of a combined table in directory,
    each written atomically (what `demoe eval --combine ... -o DIR` writes)."""
    directory = Path(directory)
    contents = {
        f"{layout}.md": render(table, layout),
        f"{layout}.csv": to_csv(table),
        f"{layout}.json": json.dumps(to_json(table), indent=2) + "\n",
    }
    return [
        atomic_write(directory / name, lambda path, text=text: Path(path).write_text(text))
        for name, text in contents.items()
    ]
