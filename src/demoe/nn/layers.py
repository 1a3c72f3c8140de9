"""NAFNet building blocks (Chen et al., 2022), exactly as released.

Shape legend: B batch, C channels, H height, W width.

Channel statistics. The simplified channel attention (SCA) of every NAFBlock multiplies its
input by a projection of the input's channel means. As trained, those are means over the whole
input, which is why a tile of an image, alone, is restored differently from the whole image.
Under `channel_statistics(source)` every SCA asks `source.pool(sca, x)` for them instead:
- `LocalStatistics`: TLC, the test-time local converter (Chu et al., 2022; NAFNet's `Local`
  models): each pixel's means over a window tied to the training crop;
- `StatisticsRecorder`: the usual global means, kept per SCA (`.statistics`);
- `RecordedStatistics`: means recorded earlier (e.g. those of the whole image, for its tiles);
- `StatisticsAccumulator`: uses given means and sums every SCA input over many calls (e.g. the
  pieces of an image), giving the means of the whole (`.statistics()`).
The source lives in a context variable, read by every SCA: it reaches blocks nested anywhere
(experts included) without a parameter threaded through them, and concurrent threads do not see
each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def local_mean(x: torch.Tensor, window_height: int, window_width: int) -> torch.Tensor:
    """Mean of x over a window_height x window_width box around every pixel (TLC's pooling).

    As NAFNet's `AvgPool2d` (non-fast version): the box means of every position where the box
    fits inside the input ("valid"), replicate-padded back to (H, W), so that a pixel near the
    border takes the box that touches the border. Window sides are clipped to the input; a
    window covering the whole input gives the global mean, shape (B, C, 1, 1).
    Computed in float32 from an integral image of the mean-centred input (small running sums).

    Shape: (B, C, H, W) -> (B, C, H, W), or (B, C, 1, 1) for a window covering the input.

    >>> x = torch.arange(6.0).view(1, 1, 1, 6)
    >>> local_mean(x, 1, 3).flatten().tolist()
    [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    """
    if window_height < 1 or window_width < 1:
        raise ValueError(f"window sides must be >= 1, got {window_height} x {window_width}")
    height, width = x.shape[-2:]
    rows, cols = min(window_height, height), min(window_width, width)
    values = x.float()
    mean = values.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    if rows == height and cols == width:
        return mean.to(x.dtype)
    integral = F.pad((values - mean).cumsum(dim=3).cumsum(dim=2), (1, 0, 1, 0))  # (B, C, H+1, W+1)
    boxes = (
        integral[..., rows:, cols:]
        - integral[..., :-rows, cols:]
        - integral[..., rows:, :-cols]
        + integral[..., :-rows, :-cols]
    ) / (rows * cols)  # (B, C, H - rows + 1, W - cols + 1)
    missing_rows, missing_cols = rows - 1, cols - 1
    boxes = F.pad(
        boxes,
        (missing_cols // 2, (missing_cols + 1) // 2, missing_rows // 2, (missing_rows + 1) // 2),
        mode="replicate",
    )
    return (boxes + mean).to(x.dtype)


@dataclass(frozen=True)
class LocalStatistics:
    """TLC: channel means over a window of `window` x `window` input pixels around each pixel.

    image_height, image_width: the size of the (padded) network input. A feature map at 1/f of
    that resolution averages over window / f of its own pixels, so the window covers the same
    part of the image at every level (NAFNet fixes it at 1.5 x the training crop).
    """

    window: int
    image_height: int
    image_width: int

    def pool(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, h, w) local means (or (B, C, 1, 1) where the window covers x)."""
        height, width = x.shape[-2:]
        return local_mean(
            x,
            max(1, self.window * height // self.image_height),
            max(1, self.window * width // self.image_width),
        )


@dataclass
class RecordedStatistics:
    """Channel means recorded per SCA module: means[sca] is (B, C, 1, 1), or (1, C, 1, 1) for any
    batch. Every SCA of a pass under these statistics must have been recorded."""

    means: dict[nn.Module, torch.Tensor]

    def pool(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        means = self.means.get(module)
        if means is None:
            raise RuntimeError(
                "no recorded channel statistics for this block: record them with the same model "
                "and the same experts (routing weights) as the pass that uses them"
            )
        return means.to(device=x.device, dtype=x.dtype)


class StatisticsRecorder:
    """Pools as usual (global means) and keeps each SCA's means in `.statistics`."""

    def __init__(self) -> None:
        self.statistics = RecordedStatistics({})

    def pool(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        means = F.adaptive_avg_pool2d(x, 1)
        self.statistics.means[module] = means.detach().float()
        return means


@dataclass(frozen=True)
class Region:
    """Rows [top, bottom) and columns [left, right) of a network input of input_height x
    input_width pixels (its padded size), in input pixels. Bounds on the grid of the size
    multiple fall on whole feature pixels at every level: at 1/f resolution the region is rows
    [top / f, bottom / f)."""

    top: int
    bottom: int
    left: int
    right: int
    input_height: int
    input_width: int


class StatisticsAccumulator:
    """Pools with `given` means while summing every SCA's input over all calls.

    `statistics()` returns the pixel-weighted means over everything summed. Set `region` before
    a call to sum only that part of its input (None = all of it): run overlapping tiles of an
    image with regions that partition the (padded) image, and the sums are the whole image's,
    each part seen with the context of its tile, computed with `given` in place of the true
    means of earlier layers.
    """

    def __init__(self, given: RecordedStatistics) -> None:
        self.given = given
        self.region: Region | None = None
        self._sums: dict[nn.Module, torch.Tensor] = {}
        self._counts: dict[nn.Module, int] = {}

    def pool(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        part = x
        if self.region is not None:
            region = self.region
            rows = region.input_height // x.shape[2]  # this level's downsampling factor
            cols = region.input_width // x.shape[3]
            part = x[:, :, region.top // rows : region.bottom // rows, region.left // cols : region.right // cols]
        sums = part.detach().float().sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        self._sums[module] = sums if module not in self._sums else self._sums[module] + sums
        self._counts[module] = self._counts.get(module, 0) + part.shape[2] * part.shape[3]
        return self.given.pool(module, x)

    def statistics(self) -> RecordedStatistics:
        if not self._sums:
            raise RuntimeError("no pass ran under this accumulator")
        return RecordedStatistics({m: total / self._counts[m] for m, total in self._sums.items()})


StatisticsSource = LocalStatistics | RecordedStatistics | StatisticsRecorder | StatisticsAccumulator
_CHANNEL_STATISTICS: contextvars.ContextVar[StatisticsSource | None] = contextvars.ContextVar(
    "demoe_channel_statistics", default=None
)


@contextlib.contextmanager
def channel_statistics(source: StatisticsSource | None) -> Iterator[None]:
    """Run the SCAs of every NAFBlock with `source`'s statistics (None = their own global means)."""
    token = _CHANNEL_STATISTICS.set(source)
    try:
        yield
    finally:
        _CHANNEL_STATISTICS.reset(token)


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) map, per-pixel; eps 1e-6.

    Shape: (B, C, H, W) -> (B, C, H, W). Weight and bias are per channel, shape (C,).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous(memory_format=torch.channels_last):
            # Fast path (perf): in channels_last memory the (B, H, W, C) view is contiguous, so
            # one fused F.layer_norm kernel replaces the ~8 element-wise passes below (about 6x
            # faster on CPU). Same math; results differ only by float rounding (~1e-6).
            normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
            return normed.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        centered = x - mean
        var = centered.pow(2).mean(1, keepdim=True)  # biased variance, as NAFNet
        normed = centered * torch.rsqrt(var + self.eps)
        return normed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them: (B, 2C, H, W) -> (B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class SimplifiedChannelAttention(nn.Module):
    """NAFNet's SCA: global average pool, 1x1 conv, multiply. (B, C, H, W) -> (B, C, H, W).

    Under `channel_statistics(source)` the pooled means are `source.pool(self, x)` instead
    (TLC's local means, or recorded ones; see the module docstring).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = _CHANNEL_STATISTICS.get()
        pooled = F.adaptive_avg_pool2d(x, 1) if source is None else source.pool(self, x)
        return x * self.proj(pooled)


class NAFBlock(nn.Module):
    """NAFNet's block: a gated depthwise-conv mixer and a gated FFN, each with layer scale.

    Parameter names follow the NAFNet release (conv1..conv5, norm1/2, beta/gamma) so that
    released checkpoints map onto it by module prefix alone.
    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw_channels = channels * dw_expand
        ffn_channels = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw_channels, 1)  # expand
        self.conv2 = nn.Conv2d(dw_channels, dw_channels, 3, padding=1, groups=dw_channels)
        self.gate = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw_channels // 2)
        self.conv3 = nn.Conv2d(dw_channels // 2, channels, 1)  # project back
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn_channels, 1)  # FFN expand
        self.conv5 = nn.Conv2d(ffn_channels // 2, channels, 1)  # FFN project
        # Layer scales start at zero: a fresh block is the identity.
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.conv3(self.sca(self.gate(self.conv2(self.conv1(self.norm1(x))))))
        # addcmul(x, a, s) = x + a * s in one pass instead of two (perf; same values to ~1e-7).
        x = torch.addcmul(x, mixed, self.beta)
        ffn = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return torch.addcmul(x, ffn, self.gamma)
