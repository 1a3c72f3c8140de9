"""Benchmark runs: a model over test manifests, scored with each benchmark's own convention.

`run_benchmark` restores every record of a manifest once per variant (auto routing with
k = 1..5, a fixed expert, or the paper's † manual choice of the record's own expert), scores the
result against the ground truth with `demoe.evaluation.protocols.evaluate_pair` (or NIQE for
blurry-only sets), and returns per-image rows that `demoe.evaluation.tables` turns into the
paper's Table 1 / Table 2 layout. The router's verdict is recorded once per image.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
from tqdm import tqdm

from demoe.data.manifest import PairRecord
from demoe.evaluation.no_reference import NoReferenceScorer
from demoe.evaluation.protocols import evaluate_pair
from demoe.evaluation.router import router_study
from demoe.evaluation.tables import build_table, method_label, to_csv, to_json, to_markdown
from demoe.fileio import atomic_write_text
from demoe.imageio import as_rgb, read_array
from demoe.inference import Deblurrer

GroupBy = Literal["dataset", "task"]


@dataclass(frozen=True)
class Variant:
    """One way of running the model: auto routing with top-k, one fixed expert, or manual (†)."""

    kind: Literal["auto", "task", "manual", "input"]
    top_k: int = 1
    task: str | None = None  # kind "task"

    def label(self, name: str) -> str:
        if self.kind == "input":
            return "Blurry input"
        if self.kind == "task":
            return f"{name} [{self.task}]"
        return method_label(name, self.top_k, manual=self.kind == "manual")

    def task_for(self, record: PairRecord) -> str:
        if self.kind == "manual":
            return record.task
        if self.kind == "task":
            return self.task
        return "auto"


def variants_from_options(
    task: str = "auto", top_ks: Sequence[int] = (1,), manual: bool = False, include_input: bool = False
) -> list[Variant]:
    variants = [Variant("input")] if include_input else []
    if task == "auto":
        variants += [Variant("auto", k) for k in top_ks]
    elif task == "manual":
        manual = True
    else:
        variants.append(Variant("task", 1, task))
    if manual:
        variants.append(Variant("manual", 1))
    return variants


@dataclass
class BenchmarkResult:
    rows: list[dict]  # per image and variant
    router: dict | None  # router study (accuracy per group, confusion, mean output), or None
    method_name: str
    group_by: GroupBy
    variants: list[Variant] = field(default_factory=list)

    def table(self):
        rows = [{**row, "dataset": row["group"]} for row in self.rows]
        return build_table(rows, methods=[v.label(self.method_name) for v in self.variants])

    def write(self, out_dir: str | os.PathLike) -> Path:
        """per_image.jsonl, table.{md,csv,json}, router.{json,md} in out_dir (created)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "per_image.jsonl", "".join(json.dumps(_jsonable(r)) + "\n" for r in self.rows))
        table = self.table()
        atomic_write_text(out / "table.md", to_markdown(table))
        atomic_write_text(out / "table.csv", to_csv(table))
        atomic_write_text(out / "table.json", json.dumps(to_json(table), indent=2) + "\n")
        if self.router is not None:
            atomic_write_text(out / "router.json", json.dumps(self.router, indent=2) + "\n")
        return out

    def to_dict(self) -> dict:
        return {
            "table": to_json(self.table()),
            "router": self.router,
            "per_image": [_jsonable(r) for r in self.rows],
        }


def _jsonable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) pixels in their stored type (uint8 / uint16): what benchmarks score."""
    return np.ascontiguousarray(as_rgb(read_array(path)))


def _read_mask(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    mask = read_array(path)
    return mask if mask.ndim == 2 else mask[..., 0]


def run_benchmark(
    deblurrer: Deblurrer,
    records: Sequence[PairRecord],
    variants: Sequence[Variant],
    method_name: str = "DeMoE",
    group_by: GroupBy = "dataset",
    tile: int = 0,
    tile_overlap: int = 32,
    no_reference: NoReferenceScorer | bool = True,
    extra_metrics: Callable[[np.ndarray, np.ndarray | None], dict] | None = None,
    progress: bool = True,
    save_dir: str | os.PathLike | None = None,
    tlc: bool = False,
) -> BenchmarkResult:
    """Restore and score every record under every variant.

    tlc: restore (and route) with TLC, local channel statistics (`Deblurrer.restore(tlc=True)`).

    no_reference: score blurry-only records (sharp None) with these no-reference metrics
        (True: NIQE only; False: not at all).
    extra_metrics(restored, sharp) -> dict adds metrics (e.g. LPIPS) to each row.
    save_dir: also write every restored image there, as <variant>/<group>/<name>.png.
    """
    if no_reference is True:
        no_reference = NoReferenceScorer()
    rows: list[dict] = []
    router_probs, router_labels, router_groups = [], [], []
    has_router = deblurrer.model.config.router
    bar = tqdm(total=len(records) * len(variants), desc="eval", unit="img", disable=not progress)
    for record in records:
        blurry = _read_rgb(record.blurry)
        sharp = _read_rgb(record.sharp) if record.sharp is not None else None
        if sharp is not None and sharp.shape != blurry.shape:
            raise ValueError(
                f"{record.blurry}: blurry {blurry.shape[:2]} and sharp {sharp.shape[:2]} differ in size"
            )
        mask = _read_mask(record.mask)
        group = record.dataset if group_by == "dataset" else record.task
        name = Path(record.blurry).stem
        probs = None
        if has_router:
            probs = deblurrer.classify(blurry, tlc=tlc)
            router_probs.append([probs[t] for t in deblurrer.task_names])
            router_labels.append(record.label)
            router_groups.append(group)
        for variant in variants:
            start = time.perf_counter()
            if variant.kind == "input":
                restored, experts = blurry, []
            else:
                result = deblurrer.restore(
                    blurry,
                    task=variant.task_for(record),
                    top_k=variant.top_k,
                    tile=tile,
                    tile_overlap=tile_overlap,
                    tlc=tlc,
                )
                restored, experts = result.image, result.experts_used
            seconds = time.perf_counter() - start
            row = _image_row(record, group, variant.label(method_name), experts, seconds, probs)
            row.update(_scores(restored, sharp, mask, record.dataset, no_reference, extra_metrics))
            if save_dir is not None and variant.kind != "input":
                from demoe.imageio import write_image

                write_image(Path(save_dir) / _slug(variant.label(method_name)) / group / f"{name}.png", restored)
            rows.append(row)
            bar.update(1)
    bar.close()
    router = _router_report(router_probs, router_labels, router_groups, deblurrer.task_names) if router_probs else None
    return BenchmarkResult(rows, router, method_name, group_by, list(variants))


def _image_row(
    record: PairRecord, group: str, method: str, experts: list, seconds: float, probs: dict[str, float] | None
) -> dict:
    """What a result row says about one image under one variant, before its scores."""
    row = {
        "name": Path(record.blurry).stem,
        "blurry": record.blurry,
        "group": group,
        "source_dataset": record.dataset,
        "task": record.task,
        "method": method,
        "experts_used": experts,
        "seconds": seconds,
    }
    if probs is not None:
        row["router_probs"] = probs
        row["router_top"] = max(probs, key=probs.get)
    return row


def _scores(
    restored: np.ndarray,
    sharp: np.ndarray | None,
    mask: np.ndarray | None,
    dataset: str,
    no_reference: NoReferenceScorer | bool,
    extra_metrics: Callable[[np.ndarray, np.ndarray | None], dict] | None,
) -> dict:
    """The dataset's protocol against the ground truth, or the no-reference metrics for a
    blurry-only record, plus `extra_metrics`."""
    scores: dict = {}
    if sharp is not None:
        scores.update(evaluate_pair(restored, sharp, dataset, mask=mask))
    elif no_reference:
        scores.update(no_reference(restored))  # None + <metric>_error where an image is too small
    if extra_metrics is not None:
        scores.update(extra_metrics(restored, sharp))
    return scores


def _router_report(probs: list, labels: list, groups: list[str], task_names: Sequence[str]) -> dict:
    """The router study of the run (accuracy per group, confusion, mean output) and its markdown."""
    study = router_study(np.array(probs), np.array(labels), groups, task_names)
    return {**study.to_dict(), "markdown": study.to_markdown()}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")


def filter_records(
    records: Iterable[PairRecord], split: str | None = "test", limit_per_group: int | None = None
) -> list[PairRecord]:
    """Records of one split (None = all), at most `limit_per_group` per (dataset, task)."""
    kept: list[PairRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for record in records:
        if split is not None and record.split != split:
            continue
        key = (record.dataset, record.task)
        if limit_per_group is not None and seen.get(key, 0) >= limit_per_group:
            continue
        seen[key] = seen.get(key, 0) + 1
        kept.append(record)
    return kept
