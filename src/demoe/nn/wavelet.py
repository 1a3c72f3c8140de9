"""The wavelet block of MLWNet (Gao et al., CVPR 2024, "Efficient multi-scale network with
learnable discrete wavelet transform for blind motion deblurring"), an expert block of the
paper's Table 7 ("Wavelet Expert", the LWN block).

Written from the paper and the authors' release (thqiu0419/MLWNet, `WaveletBlock` and `LWN` in
`MLWNet_arch.py` / `wavelet_block.py`, Haar initialisation): a NAFBlock whose depthwise mixer is
replaced by a learnable wavelet network (LWN). LWN takes a one-level 2D discrete wavelet
transform with learnable 1D filters (initialised to Haar), mixes the four sub-bands (4C
channels at half resolution) with 1x1 conv to 6C -> depthwise 7x7 -> GELU -> 1x1 conv to 4C,
and transforms back with learnable synthesis filters. The release also trains the filters with
a perfect-reconstruction / alias-cancellation loss (`get_wavelet_loss`); the paper says nothing
of it for Table 7 and demoe's training loop adds no such term (the filters are trained by the
restoration loss alone).

The transforms are pure functions (`dwt2`, `idwt2`); with Haar filters idwt2(dwt2(x)) = x.

Shape legend: B batch, C channels, H/W height/width, h/w = ceil(H/2), ceil(W/2).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from demoe.nn.layers import LayerNorm2d, SimpleGate, SimplifiedChannelAttention

_HAAR = 1 / math.sqrt(2)


def wavelet_filters(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The four 2D filters (LL, LH, HL, HH) of 1D filters `low`, `high` (each (K,)): (4, K, K),
    filter[f][i, j] = a[i] * b[j] with (a, b) = (low, low), (high, low), (low, high), (high, high)."""
    pairs = ((low, low), (high, low), (low, high), (high, high))
    return torch.stack([torch.outer(a, b) for a, b in pairs])


def dwt2(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """One-level 2D DWT with length-2 analysis filters: (B, C, H, W) -> (B, 4, C, h, w).

    Odd sides are padded by one replicated row/column (the release's `fwt_pad2`). Sub-band
    order LL, LH, HL, HH.
    """
    batch, channels, height, width = x.shape
    x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate") if height % 2 or width % 2 else x
    kernel = wavelet_filters(low, high).to(x.dtype).repeat(channels, 1, 1).unsqueeze(1)  # (4C, 1, 2, 2)
    bands = F.conv2d(x, kernel, stride=2, groups=channels)  # (B, C * 4, h, w), channel-major
    return bands.reshape(batch, channels, 4, *bands.shape[-2:]).transpose(1, 2)


def idwt2(bands: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt2` with length-2 synthesis filters: (B, 4, C, h, w) -> (B, C, 2h, 2w)."""
    batch, _, channels, height, width = bands.shape
    kernel = wavelet_filters(low, high).to(bands.dtype).repeat(channels, 1, 1).unsqueeze(1)  # (4C, 1, 2, 2)
    interleaved = bands.transpose(1, 2).reshape(batch, channels * 4, height, width)
    return F.conv_transpose2d(interleaved, kernel, stride=2, groups=channels)


class LearnableWaveletNetwork(nn.Module):
    """LWN: DWT -> 1x1 (4C -> 6C) -> depthwise 7x7 -> GELU -> 1x1 (6C -> 4C) -> inverse DWT.

    The analysis (dec_*) and synthesis (rec_*) filters are parameters initialised to Haar, in
    the orientation of the release (dec_hi = (1, -1)/sqrt 2 as correlation taps, rec_hi =
    (1, -1)/sqrt 2), for which `idwt2(dwt2(x))` is exactly x.
    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dec_lo = nn.Parameter(torch.tensor([_HAAR, _HAAR]))
        self.dec_hi = nn.Parameter(torch.tensor([_HAAR, -_HAAR]))
        self.rec_lo = nn.Parameter(torch.tensor([_HAAR, _HAAR]))
        self.rec_hi = nn.Parameter(torch.tensor([_HAAR, -_HAAR]))
        self.conv1 = nn.Conv2d(channels * 4, channels * 6, 1)
        self.conv2 = nn.Conv2d(channels * 6, channels * 6, 7, padding=3, groups=channels * 6)
        self.conv3 = nn.Conv2d(channels * 6, channels * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        bands = dwt2(x, self.dec_lo, self.dec_hi)  # (B, 4, C, h, w)
        mixed = self.conv3(F.gelu(self.conv2(self.conv1(bands.flatten(1, 2)))))  # (B, 4C, h, w)
        restored = idwt2(mixed.reshape(bands.shape), self.rec_lo, self.rec_hi)
        return restored[..., :height, :width]


class WaveletBlock(nn.Module):
    """MLWNet's wavelet block: x + beta * 1x1(SCA(LWN(LN(x)))), then a NAFBlock's gated FFN
    y + gamma * FFN(LN(y)). Layer scales start at zero: a fresh block is the identity.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.wavelet = LearnableWaveletNetwork(channels)
        self.sca = SimplifiedChannelAttention(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, channels * 2, 1)
        self.gate = SimpleGate()
        self.conv5 = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(x, self.conv3(self.sca(self.wavelet(self.norm1(x)))), self.beta)
        return torch.addcmul(y, self.conv5(self.gate(self.conv4(self.norm2(y)))), self.gamma)
