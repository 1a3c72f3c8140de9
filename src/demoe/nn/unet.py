"""The U-Net plumbing every network of the package shares (DeMoE's `DeblurUNet` and the dense
comparison networks): padding the input to the size multiple, and the encoder pass that keeps
each level's output as the decoder's skip.

Shape legend: B batch, C channels, H/W height/width.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

# How input sides are padded to the size multiple: "zeros" (as the authors' releases) or
# "replicate" (border pixels repeated).
Padding = Literal["zeros", "replicate"]
PADDINGS: tuple[str, ...] = typing.get_args(Padding)


def check_padding(padding: str) -> None:
    """ValueError naming the valid values unless `padding` is one of PADDINGS."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")


def pad_to_multiple(x: torch.Tensor, multiple: int, padding: Padding = "zeros") -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H', W'), padded right and bottom (zeros, or the edge pixels
    repeated) to H', W' the next multiples of `multiple`.

    >>> pad_to_multiple(torch.ones(1, 1, 3, 5), 4, "replicate").shape
    torch.Size([1, 1, 4, 8])
    """
    height, width = x.shape[-2:]
    pads = (0, -width % multiple, 0, -height % multiple)
    if padding == "replicate" and any(pads):
        return F.pad(x, pads, mode="replicate")
    return F.pad(x, pads)


def encode_levels(
    features: torch.Tensor, encoders: Iterable[nn.Module], downs: Iterable[nn.Module]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Runs a U-Net's encoder on the embedded input: at every level its blocks, whose output is
    kept as the skip, then its down-sampling. Returns the bottleneck's input and the skips,
    full resolution first."""
    skips = []
    for encoder, down in zip(encoders, downs):
        features = encoder(features)
        skips.append(features)
        features = down(features)
    return features, skips
