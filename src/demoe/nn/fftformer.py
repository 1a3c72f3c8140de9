"""FFTformer (Kong et al., CVPR 2023, "Efficient frequency domain-based transformers for
high-quality image deblurring"), a Table 1 rival.

Written from the paper and the layer sizes of the authors' release (kkkls/FFTformer,
`fftformer_arch.py`). A 3-level U-Net (bilinear resampling + 3x3 convs) whose blocks work on
8x8 patches in the frequency domain:

- DFFN (discriminative frequency-domain FFN): 1x1 conv to 2 x hidden, each 8x8 patch multiplied
  by a learned filter in the Fourier domain (rfft2 -> x W -> irfft2), depthwise 3x3,
  GELU(a) * b, 1x1 conv back. Encoder blocks are DFFN only.
- FSAS (frequency-domain self-attention solver): q, k, v from 1x1 + depthwise 3x3 convs; the
  attention map is irfft2(rfft2(q) * rfft2(k)) per 8x8 patch (a correlation, computed as a
  product of spectra), layer-normalised, multiplied with v, 1x1 conv back. Decoder and
  refinement blocks are FSAS + DFFN.
- skips are fused by `Fuse`: 1x1 conv of the concatenation, one DFFN block, 1x1 conv, and the
  two halves added.

The bottom level holds `middle_blocks` encoder blocks then `middle_blocks` decoder blocks (the
release's encoder_level3 / decoder_level3, 12 each). The release also builds a 1x1 conv it
never calls (`reduce_chan_level2`, 18,432 parameters), left out here: 16,542,042 parameters here,
16,560,474 (16.56 M) in the release. FFTs run in float32 (as the release does) and their result
is cast back, so bf16/fp16 autocast works.

Every feature map is cut into 8x8 patches, so input sides are padded to a multiple of
2**levels * 8 (32 for the standard configuration).

Shape legend: B batch, C channels, H/W height/width (multiples of 8 at every level).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from demoe.config import ModelConfig
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.layers import LayerNorm2d
from demoe.nn.unet import encode_levels

PATCH = 8  # side of the patches the FFTs work on
LAYER_NORM_EPS = 1e-5
FUSE_FFN_EXPANSION = 2.66  # the release's Fuse blocks keep TransformerBlock's default expansion


def to_patches(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/8, W/8, 8, 8), H and W multiples of 8."""
    batch, channels, height, width = x.shape
    patches = x.reshape(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH)
    return patches.permute(0, 1, 2, 4, 3, 5)


def from_patches(patches: torch.Tensor) -> torch.Tensor:
    """(B, C, H/8, W/8, 8, 8) -> (B, C, H, W): the inverse of `to_patches`."""
    batch, channels, rows, columns = patches.shape[:4]
    return patches.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, rows * PATCH, columns * PATCH)


class DFFN(nn.Module):
    """Discriminative frequency-domain FFN; hidden = int(C * expansion). (B, C, H, W) -> same."""

    def __init__(self, channels: int, expansion: float) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        # A real filter per channel on the rfft2 grid of an 8x8 patch (8 x 5), starting at 1. Kept
        # 3-D (the release's is (2h, 1, 1, 8, 5)): a 5-D parameter breaks
        # `model.to(memory_format=torch.channels_last)`.
        self.fft = nn.Parameter(torch.ones(hidden * 2, PATCH, PATCH // 2 + 1))
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        spectrum = torch.fft.rfft2(to_patches(x).float()) * self.fft.float()[:, None, None]  # (B, 2h, h/8, w/8, 8, 5)
        x = from_patches(torch.fft.irfft2(spectrum, s=(PATCH, PATCH))).to(x.dtype)
        gate, value = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class FSAS(nn.Module):
    """Frequency-domain self-attention solver. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.to_hidden = nn.Conv2d(channels, channels * 6, 1, bias=False)
        self.to_hidden_dw = nn.Conv2d(channels * 6, channels * 6, 3, padding=1, groups=channels * 6, bias=False)
        self.norm = LayerNorm2d(channels * 2, eps=LAYER_NORM_EPS)
        self.project_out = nn.Conv2d(channels * 2, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_hidden_dw(self.to_hidden(x)).chunk(3, dim=1)  # (B, 2C, H, W) each
        spectrum = torch.fft.rfft2(to_patches(q).float()) * torch.fft.rfft2(to_patches(k).float())
        correlation = from_patches(torch.fft.irfft2(spectrum, s=(PATCH, PATCH))).to(v.dtype)
        return self.project_out(v * self.norm(correlation))


class FFTformerBlock(nn.Module):
    """[x + FSAS(LN(x))] if attention, then x + DFFN(LN(x)). (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, expansion: float, attention: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels, eps=LAYER_NORM_EPS) if attention else None
        self.attn = FSAS(channels) if attention else None
        self.norm2 = LayerNorm2d(channels, eps=LAYER_NORM_EPS)
        self.ffn = DFFN(channels, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def fftformer_blocks(channels: int, count: int, expansion: float, attention: bool) -> nn.Sequential:
    return nn.Sequential(*(FFTformerBlock(channels, expansion, attention) for _ in range(count)))


class Fuse(nn.Module):
    """Fuses the up-sampled decoder features with the encoder skip: (B, C, H, W) x 2 -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, 1)
        self.att_channel = FFTformerBlock(channels * 2, FUSE_FFN_EXPANSION, attention=False)
        self.conv2 = nn.Conv2d(channels * 2, channels * 2, 1)

    def forward(self, decoded: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        fused = self.conv2(self.att_channel(self.conv(torch.cat([decoded, skip], dim=1))))
        first, second = fused.chunk(2, dim=1)
        return first + second


class Downsample(nn.Sequential):
    """Bilinear 0.5x, then 3x3 conv to 2C: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False),
        )


class Upsample(nn.Sequential):
    """Bilinear 2x, then 3x3 conv to C/2: (B, C, H, W) -> (B, C/2, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False),
        )


class FFTformer(DenseDeblurNet):
    """FFTformer from a ModelConfig (`architecture="fftformer"`): level l has width * 2**l
    channels; `encoder_blocks[l]` DFFN blocks down; at the bottom `middle_blocks` DFFN blocks
    then `middle_blocks` FSAS blocks; `decoder_blocks` (deepest first) FSAS blocks up, each
    level after a `Fuse` with its skip; `refinement_blocks` FSAS blocks at the end. The
    standard configuration is the `fftformer` preset (width 48, 6-6-12 blocks, 4 refinement
    blocks, FFN expansion 3).
    """

    architecture = "fftformer"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        width, expansion = config.width, config.ffn_expansion
        levels = len(config.encoder_blocks)
        self.patch_embed = nn.Conv2d(config.image_channels, width, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, count in enumerate(config.encoder_blocks):
            self.encoders.append(fftformer_blocks(width * 2**level, count, expansion, attention=False))
            self.downs.append(Downsample(width * 2**level))
        channels = width * 2**levels
        self.middle_encoder = fftformer_blocks(channels, config.middle_blocks, expansion, attention=False)
        self.middle_decoder = fftformer_blocks(channels, config.middle_blocks, expansion, attention=True)
        self.ups = nn.ModuleList()
        self.fuses = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for count in config.decoder_blocks:
            self.ups.append(Upsample(channels))
            channels //= 2
            self.fuses.append(Fuse(channels))
            self.decoders.append(fftformer_blocks(channels, count, expansion, attention=True))
        self.refinement = fftformer_blocks(width, config.refinement_blocks, expansion, attention=True)
        self.output = nn.Conv2d(width, config.image_channels, 3, padding=1, bias=False)

    def restore(self, padded: torch.Tensor) -> torch.Tensor:
        features, skips = encode_levels(self.patch_embed(padded), self.encoders, self.downs)
        features = self.middle_decoder(self.middle_encoder(features))
        for up, fuse, decoder, skip in zip(self.ups, self.fuses, self.decoders, reversed(skips)):
            features = decoder(fuse(up(features), skip))
        return self.output(self.refinement(features)) + padded
