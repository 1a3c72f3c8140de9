"""The cost table: parameters, MACs and runtime per model (Table 1's cost column), with the
ensemble of task-specific baselines of the paper's Sec. 5 ("DeMoE-5").

DeMoE-5 is five task-specific networks, one per blur type, each the dense baseline of the DeMoE
model (`baseline_of(config)` without router; for `demoe` that is `nafnet-baseline`, 10.08 M).
With the right member picked for each image (as the manual expert choice does), one image costs
one member's MACs and runtime, while all five members' parameters must be stored:
params = 5 x baseline params (50.4 M against DeMoE's 20.15 M in the paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from demoe.config import ModelConfig, baseline_of
from demoe.evaluation.cost import count_macs, count_parameters, measure_latency_ms
from demoe.model import DeblurUNet


@dataclass(frozen=True)
class CostRow:
    model: str  # label (preset name, directory or "<name>-5 ensemble")
    params: int  # parameters stored
    macs_g: float  # multiply-accumulates per image, in billions
    latency_ms: float  # median wall time of one forward pass per image (on the device measured)
    ensemble_of: int | None = None  # number of members for an ensemble row

    def to_dict(self) -> dict:
        return asdict(self)


def ensemble_member_config(config: ModelConfig) -> ModelConfig:
    """A task-specific member of the ensemble: the dense baseline of `config`, without router."""
    member = baseline_of(config).replace(router=False)
    return member.replace(name=f"{config.name}-task-specific")


def measure_row(
    label: str,
    model: DeblurUNet,
    size: int = 256,
    top_k: int = 1,
    repeats: int = 10,
    warmup: int = 3,
    device: str = "cpu",
) -> CostRow:
    """Parameters, MACs (counted on CPU) and median latency on `device` of one model on a
    (1, 3, size, size) input."""
    top = top_k if model.config.is_moe else None
    return CostRow(
        model=label,
        params=count_parameters(model),
        macs_g=count_macs(model, size, top),
        latency_ms=measure_latency_ms(model, size, top, warmup=warmup, repeats=repeats, device=device),
    )


def ensemble_row(member: CostRow, members: int, label: str) -> CostRow:
    """An ensemble of `members` copies of a task-specific network, one member run per image."""
    if members < 1:
        raise ValueError(f"an ensemble needs at least one member, got {members}")
    return CostRow(label, member.params * members, member.macs_g, member.latency_ms, ensemble_of=members)


def cost_table(
    models: Sequence[tuple[str, DeblurUNet]],
    size: int = 256,
    top_k: int = 1,
    repeats: int = 10,
    with_ensembles: bool = True,
    warmup: int = 3,
    device: str = "cpu",
) -> list[CostRow]:
    """One row per model; after every MoE model, the row of its ensemble of task-specific
    baselines (num_experts members), measured on a freshly built member (cost does not depend
    on the weights)."""
    rows = []
    for label, model in models:
        rows.append(measure_row(label, model, size, top_k, repeats, warmup, device))
        if with_ensembles and model.config.is_moe:
            member = DeblurUNet(ensemble_member_config(model.config))
            member_row = measure_row(member.config.name, member, size, top_k, repeats, warmup, device)
            members = model.config.num_experts
            rows.append(ensemble_row(member_row, members, f"{label}-{members} ensemble"))
    return rows


def comparisons(rows: Sequence[CostRow]) -> list[str]:
    """Sentences comparing each model with the ensemble row that follows it."""
    lines = []
    for model_row, next_row in zip(rows, rows[1:]):
        if next_row.ensemble_of is None or model_row.ensemble_of is not None:
            continue
        ratio = next_row.params / model_row.params
        fewer_or_more = f"{ratio:.2f}x fewer" if ratio >= 1 else f"{1 / ratio:.2f}x more"
        lines.append(
            f"{model_row.model} vs {next_row.model}: {fewer_or_more} "
            f"parameters ({model_row.params / 1e6:.2f} M vs {next_row.params / 1e6:.2f} M); "
            f"{model_row.macs_g / next_row.macs_g:.2f}x the MACs of one member"
        )
    return lines


def to_markdown(rows: Sequence[CostRow], size: int, top_k: int, device: str = "cpu") -> str:
    lines = [
        f"| Model | Params (M) | MACs (G) at {size}x{size} | Runtime (ms, {device}) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row.model} | {row.params / 1e6:.2f} | {row.macs_g:.2f} | {row.latency_ms:.1f} |")
    notes = comparisons(rows)
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    text += (
        f"\nMoE models with top-{top_k}; ensemble rows: parameters of all members, MACs and "
        "runtime of the one member run per image.\n"
    )
    return text
