"""SFHformer (Jiang et al., ECCV 2024, "When fast Fourier transform meets transformer for image
restoration"), a Table 1 rival.

Written from the paper and the layer sizes of the authors' release (deng-ai-lab/SFHformer,
`models/SFHformer.py`, `SFHformer_l`, the size its motion-deblurring config trains): a 3-level
U-Net of MetaFormer-style blocks with BatchNorm and zero-initialised layer scales. Each block's
token mixer splits the channels into a local branch (depthwise 3x3 convs, dilation 1 and 2) and
a global branch in the Fourier domain (`FourierUnit`: rfft2 -> real/imaginary parts as
channels -> BatchNorm -> depthwise 3x3 "positional encoding" -> a 1x1 conv with 4 groups whose
outputs are mixed per frequency by softmax weights (frequency dynamic convolution) -> GELU ->
irfft2), then channel attention; the FFN splits its hidden channels over identity / depthwise
3x3 / 5x5 / 7x7 convs. Down-sampling: 2x2 stride-2 conv; up-sampling: 1x1 conv + pixel shuffle;
skips are concatenated and reduced by a 1x1 conv.

FFTs run in float32 and their result is cast back (bf16/fp16 autocast works).

Shape legend: B batch, C channels, G groups, H/W height/width, W' = W // 2 + 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from demoe.config import ModelConfig
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.unet import encode_levels

FOURIER_GROUPS = 4  # kernels of the frequency dynamic convolution


class FourierUnit(nn.Module):
    """Global mixing in the Fourier domain: (B, C, H, W) -> (B, C, H, W).

    Real and imaginary parts of rfft2 (orthonormal) are interleaved into 2C channels; G 1x1
    convs (one grouped conv) each map them to 2C channels and a softmax over G at every
    frequency mixes the G results.
    """

    def __init__(self, channels: int, groups: int = FOURIER_GROUPS) -> None:
        super().__init__()
        spectral = channels * 2
        self.groups = groups
        self.bn = nn.BatchNorm2d(spectral)
        self.fdc = nn.Conv2d(spectral, spectral * groups, 1, groups=groups)
        self.weight = nn.Sequential(nn.Conv2d(spectral, groups, 1), nn.Softmax(dim=1))
        self.fpe = nn.Conv2d(spectral, spectral, 3, padding=1, groups=spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W') complex
        # (B, C, H, W', 2) -> (B, 2C, H, W'), channel 2c = real part, 2c + 1 = imaginary part.
        features = torch.view_as_real(spectrum).permute(0, 1, 4, 2, 3).reshape(batch, 2 * channels, height, -1)
        features = features.to(x.dtype)
        features = self.bn(features)
        features = self.fpe(features) + features
        mix = self.weight(features)  # (B, G, H, W')
        candidates = self.fdc(features).view(batch, self.groups, 2 * channels, height, -1)  # (B, G, 2C, H, W')
        features = F.gelu(torch.einsum("bgchw,bghw->bchw", candidates, mix))
        pairs = features.float().reshape(batch, channels, 2, height, -1).permute(0, 1, 3, 4, 2)
        spectrum = torch.view_as_complex(pairs.contiguous())
        return torch.fft.irfft2(spectrum, s=(height, width), norm="ortho").to(x.dtype)


class LocalMixer(nn.Module):
    """Depthwise 3x3 convs, dilation 1 on the first half of the channels and 2 on the second."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.dilated_1 = nn.Conv2d(half, half, 3, padding=1, groups=half)
        self.dilated_2 = nn.Conv2d(half, half, 3, padding=2, dilation=2, groups=half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return torch.cat([self.dilated_1(first), self.dilated_2(second)], dim=1)


class GlobalMixer(nn.Module):
    """1x1 conv to 2C + GELU, x + FourierUnit(x), 1x1 conv back + GELU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_init = nn.Sequential(nn.Conv2d(channels, channels * 2, 1), nn.GELU())
        self.fourier = FourierUnit(channels * 2)
        self.conv_fina = nn.Sequential(nn.Conv2d(channels * 2, channels, 1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_init(x)
        return self.conv_fina(x + self.fourier(x))


class Mixer(nn.Module):
    """1x1 conv to 2C; half local, half global mixing; GELU; channel attention; 1x1 conv to C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_init = nn.Conv2d(channels, channels * 2, 1)
        self.mixer_local = LocalMixer(channels)
        self.mixer_global = GlobalMixer(channels)
        self.ca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels * 2, channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels * 2, 1),
            nn.Sigmoid(),
        )
        self.ca_conv = nn.Conv2d(channels * 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, global_ = self.conv_init(x).chunk(2, dim=1)
        x = F.gelu(torch.cat([self.mixer_local(local), self.mixer_global(global_)], dim=1))
        return self.ca_conv(self.ca(x) * x)


class MultiScaleFFN(nn.Module):
    """1x1 conv to 2C; quarters through identity / dw 3x3 / dw 5x5 / dw 7x7; GELU; 1x1 to C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        quarter = channels // 2
        self.conv_init = nn.Conv2d(channels, channels * 2, 1)
        self.conv1_1 = nn.Conv2d(quarter, quarter, 3, padding=1, groups=quarter)
        self.conv1_2 = nn.Conv2d(quarter, quarter, 5, padding=2, groups=quarter)
        self.conv1_3 = nn.Conv2d(quarter, quarter, 7, padding=3, groups=quarter)
        self.conv_fina = nn.Conv2d(channels * 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity, small, medium, large = self.conv_init(x).chunk(4, dim=1)
        x = torch.cat([identity, self.conv1_1(small), self.conv1_2(medium), self.conv1_3(large)], dim=1)
        return self.conv_fina(F.gelu(x))


class SFHformerBlock(nn.Module):
    """x + beta * Mixer(BN(x)), then x + gamma * FFN(BN(x)); beta, gamma start at 0 (identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"SFHformer blocks need a multiple of 4 channels, got {channels}")
        self.norm1 = nn.BatchNorm2d(channels)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mixer = Mixer(channels)
        self.ffn = MultiScaleFFN(channels)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x)) * self.beta
        return x + self.ffn(self.norm2(x)) * self.gamma


def sfhformer_blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(SFHformerBlock(channels) for _ in range(count)))


class SFHformer(DenseDeblurNet):
    """SFHformer from a ModelConfig (`architecture="sfhformer"`): level l has width * 2**l
    channels and `encoder_blocks[l]` blocks, the bottleneck `middle_blocks`, the decoder
    `decoder_blocks` (deepest first). The `sfhformer` preset is the release's SFHformer-L
    (width 32, depths 6-6-10-6-6).
    """

    architecture = "sfhformer"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        width = config.width
        levels = len(config.encoder_blocks)
        self.patch_embed = nn.Conv2d(config.image_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, count in enumerate(config.encoder_blocks):
            self.encoders.append(sfhformer_blocks(width * 2**level, count))
            self.downs.append(nn.Conv2d(width * 2**level, width * 2 ** (level + 1), 2, stride=2))
        channels = width * 2**levels
        self.middle = sfhformer_blocks(channels, config.middle_blocks)
        self.ups = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for count in config.decoder_blocks:
            # 1x1 conv to 2C then pixel shuffle: half the channels, twice the resolution.
            self.ups.append(nn.Sequential(nn.Conv2d(channels, channels * 2, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.skips.append(nn.Conv2d(channels * 2, channels, 1))
            self.decoders.append(sfhformer_blocks(channels, count))
        self.patch_unembed = nn.Conv2d(width, config.image_channels, 3, padding=1)

    def restore(self, padded: torch.Tensor) -> torch.Tensor:
        features, skips = encode_levels(self.patch_embed(padded), self.encoders, self.downs)
        features = self.middle(features)
        for up, reduce, decoder, skip in zip(self.ups, self.skips, self.decoders, reversed(skips)):
            features = decoder(reduce(torch.cat([up(features), skip], dim=1)))
        return self.patch_unembed(features) + padded
