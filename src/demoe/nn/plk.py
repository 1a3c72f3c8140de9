"""The partial large-kernel block of PLKSR (Lee et al., 2024, "Partial large kernel CNNs for
efficient super-resolution"), an expert block of the paper's Table 7 ("PLK Expert").

Written from the paper and the authors' release (dslisleedh/PLKSR, `PLKBlock` in
`plksr_arch.py`, the configuration of its main model: DCCM channel mixer, kernel 17, split
ratio 0.25, element-wise attention): x + 1x1(EA(PLK(DCCM(x)))), where

- DCCM (doubled convolutional channel mixer): 3x3 conv to 2C, GELU, 3x3 conv back to C;
- PLK: a 17x17 conv on the first C/4 channels only, the other channels passed through;
- EA (element-wise attention): x * sigmoid(3x3 conv(x)).

The block has no normalisation and no layer scale (as released; the convs that write into the
residual start small, trunc-normal with std 0.02). PLKSR's eval-time re-parametrisation and
in-place slicing are inference tricks of the release, not needed for the result.

Shape legend: B batch, C channels, H/W height/width.
"""

from __future__ import annotations

import torch
from torch import nn

KERNEL_SIZE = 17  # PLKSR's large kernel
SPLIT_RATIO = 0.25  # share of the channels the large kernel sees


def _small_init(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.trunc_normal_(conv.weight, std=0.02)
    return conv


class PartialLargeKernelConv(nn.Module):
    """A k x k conv on the first `partial` channels; the rest pass unchanged. (B, C, H, W) -> same."""

    def __init__(self, channels: int, partial: int, kernel_size: int) -> None:
        super().__init__()
        self.partial = partial
        self.conv = _small_init(nn.Conv2d(partial, partial, kernel_size, padding=kernel_size // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = x.split([self.partial, x.shape[1] - self.partial], dim=1)
        return torch.cat([self.conv(first), rest], dim=1)


class ElementwiseAttention(nn.Module):
    """x * sigmoid(conv3x3(x)). (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _small_init(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PLKBlock(nn.Module):
    """PLKSR's block: x + refine(EA(PLK(DCCM(x)))). Shape: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, kernel_size: int = KERNEL_SIZE, split_ratio: float = SPLIT_RATIO) -> None:
        super().__init__()
        partial = int(channels * split_ratio)
        if partial < 1:
            raise ValueError(f"PLKBlock: {channels} channels x split ratio {split_ratio} leaves no channel for the large kernel")
        self.channel_mixer = nn.Sequential(
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.GELU(),
            _small_init(nn.Conv2d(channels * 2, channels, 3, padding=1)),
        )
        self.large_kernel = PartialLargeKernelConv(channels, partial, kernel_size)
        self.attention = ElementwiseAttention(channels)
        self.refine = _small_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.refine(self.attention(self.large_kernel(self.channel_mixer(x))))
