"""One evaluation run, what `demoe eval` does: a model over test manifests, scored with each
benchmark's own convention, with the optional metrics (LPIPS; MUSIQ and NRQM for sets without
ground truth) and cost, written as per_image.jsonl, table.{md,csv,json}, router.json and
cost.json.

The steps, each usable alone:

- `read_records(manifests, split, limit)`: the records to run, every file checked to exist;
- `load_metrics(MetricOptions(...))`: the optional metrics, and why any of them is skipped;
- `evaluate(deblurrer, records, variants, EvalOptions(...), metrics, context)`: restore and
  score (shared out between the processes under torchrun), then measure the cost;
- `Evaluation.write(out_dir)`, `Evaluation.table()`: the outputs.

Example (a trained model and a manifest of test images):
    records = read_records(["aio.jsonl"], split="test")
    run = evaluate(Deblurrer("runs/demoe/last"), records, variants_from_options("auto", [1, 2]))
    run.write("results/demoe")  # what `demoe eval ... -o results/demoe` writes
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from demoe.data.manifest import PairRecord, read_manifest
from demoe.distributed import DistributedContext
from demoe.evaluation.benchmark import BenchmarkResult, GroupBy, Variant, filter_records
from demoe.evaluation.comparison import model_cost, write_costs
from demoe.evaluation.cost import Cost
from demoe.evaluation.no_reference import NoReferenceScorer, load_no_reference
from demoe.evaluation.sharded import run_benchmark_sharded
from demoe.evaluation.tables import ResultTable, build_table
from demoe.inference import Deblurrer

MISSING_SHOWN = 5  # missing files named in the error; the rest are counted


@dataclass(frozen=True)
class EvalOptions:
    """How `evaluate` restores, scores and tabulates."""

    method_name: str = "DeMoE"  # the method's name in the table
    group_by: GroupBy = "dataset"  # table columns: one per dataset or per task
    tile: int = 0  # tile side for big images; 0 = the whole image at once
    tile_overlap: int = 32  # pixels shared by neighbouring tiles
    tlc: bool = False  # local channel statistics (needs the model's train_crop)
    save_dir: str | os.PathLike | None = None  # also write the restored images there
    progress: bool = True  # a progress bar (rank 0's only under torchrun)
    cost_size: int | None = None  # also measure params, MACs and runtime at this square side; None = no cost
    cost_repeats: int = 10  # timed forward passes of the cost


@dataclass(frozen=True)
class MetricOptions:
    """The optional metrics; their files are never downloaded."""

    lpips: str | None = None  # LPIPS backbone, "alex" or "vgg"; None = no LPIPS
    lpips_backbone: str | os.PathLike | None = None  # its torchvision ImageNet weights (default: torch hub cache)
    musiq_weights: str | os.PathLike | None = None  # MUSIQ for sets without ground truth
    nrqm_weights: str | os.PathLike | None = None  # NRQM (NRQM_model.mat) for sets without ground truth


@dataclass
class Metrics:
    """The loaded optional metrics (what `run_benchmark` takes) and those skipped."""

    no_reference: NoReferenceScorer  # NIQE, plus MUSIQ / NRQM where loaded
    extra: Callable[[np.ndarray, np.ndarray | None], dict] | None = None  # LPIPS against the ground truth
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not loaded


def load_metrics(options: MetricOptions = MetricOptions(), device: str = "cpu") -> Metrics:
    """NIQE always; LPIPS, MUSIQ and NRQM as asked. A metric whose file is missing, unreadable
    or untrusted is skipped (with the reason), not an error."""
    skipped: dict[str, str] = {}
    extra = None
    if options.lpips:
        from demoe.evaluation.lpips import LPIPSBackboneNotFoundError, load_lpips, lpips_distance

        try:
            lpips_model = load_lpips(options.lpips, options.lpips_backbone)
        except (LPIPSBackboneNotFoundError, ValueError) as error:
            skipped["lpips"] = str(error)
        else:
            def extra(restored: np.ndarray, sharp: np.ndarray | None) -> dict:
                return {} if sharp is None else {"lpips": lpips_distance(restored, sharp, lpips_model)}

    no_reference, no_reference_skipped = load_no_reference(
        True, options.musiq_weights, options.nrqm_weights, device=device
    )
    return Metrics(no_reference, extra, {**skipped, **no_reference_skipped})


def read_records(
    manifests: Sequence[str | os.PathLike], split: str | None = "test", limit_per_group: int | None = None
) -> list[PairRecord]:
    """The records of the manifests, of one split (None = all), at most `limit_per_group` per
    (dataset, task). FileNotFoundError for a missing manifest or image (the first few named),
    ValueError for a malformed manifest or when no record is left."""
    records: list[PairRecord] = []
    for manifest in manifests:
        records += read_manifest(manifest)
    records = filter_records(records, split, limit_per_group)
    if not records:
        of_split = "" if split is None else f" of split {split!r}"
        raise ValueError(f"no records{of_split} in {', '.join(map(str, manifests))}")
    missing = [p for r in records for p in (r.blurry, r.sharp, r.mask) if p is not None and not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - MISSING_SHOWN} more)" if len(missing) > MISSING_SHOWN else ""
        raise FileNotFoundError(f"manifest files not found: {', '.join(missing[:MISSING_SHOWN])}{more}")
    return records


@dataclass
class Evaluation:
    """A finished run: per-image rows and router study, and the cost of each variant."""

    result: BenchmarkResult
    costs: dict[str, Cost] = field(default_factory=dict)  # variant label -> cost; empty without cost

    def table(self) -> ResultTable:
        """The table of the run, with the cost column when the cost was measured."""
        table = self.result.table()
        if not self.costs:
            return table
        rows = [{**row, "dataset": row["group"]} for row in self.result.rows]
        return build_table(rows, methods=table.methods, costs=self.costs)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """per_image.jsonl, table.{md,csv,json}, router.json and (with costs) cost.json in out_dir."""
        out = self.result.write(out_dir)
        if self.costs:
            write_costs(out, self.costs)
        return out

    def to_dict(self) -> dict:
        """{"table", "router", "per_image"}: what `demoe eval --json` prints."""
        return self.result.to_dict()


def evaluate(
    deblurrer: Deblurrer,
    records: Sequence[PairRecord],
    variants: Sequence[Variant],
    options: EvalOptions = EvalOptions(),
    metrics: Metrics | None = None,
    context: DistributedContext | None = None,
) -> Evaluation | None:
    """Restore and score every record under every variant, then measure the cost when asked.

    Under torchrun (`context` of `demoe.inference.sharding.start_ranks`) the records are shared
    out; rank 0 returns the merged run and the other ranks None. A collective: every rank must
    call it with the same records.
    """
    if context is None:
        context = DistributedContext(0, 0, 1, deblurrer.device)
    metrics = metrics if metrics is not None else load_metrics(device=str(deblurrer.device))
    result = run_benchmark_sharded(
        context,
        deblurrer,
        records,
        variants,
        method_name=options.method_name,
        group_by=options.group_by,
        tile=options.tile,
        tile_overlap=options.tile_overlap,
        no_reference=metrics.no_reference,
        extra_metrics=metrics.extra,
        progress=options.progress,
        save_dir=options.save_dir,
        tlc=options.tlc,
    )
    if result is None:
        return None
    costs = {}
    if options.cost_size is not None:
        costs = variant_costs(deblurrer, variants, options.method_name, options.cost_size, options.cost_repeats)
    return Evaluation(result, costs)


def variant_costs(
    deblurrer: Deblurrer, variants: Sequence[Variant], method_name: str, size: int = 256, repeats: int = 10
) -> dict[str, Cost]:
    """{variant label: params, MACs and runtime at size x size on the deblurrer's device}; auto
    variants at their top-k, a fixed or manual expert at top-1, the blurry input not at all."""
    costs = {}
    for variant in variants:
        if variant.kind != "input":
            top_k = variant.top_k if variant.kind == "auto" else 1
            costs[variant.label(method_name)] = model_cost(deblurrer.model, top_k, size, repeats, str(deblurrer.device))
    return costs
