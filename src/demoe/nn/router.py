"""The blur router: classifies the blur type from the encoder's bottleneck features."""

from __future__ import annotations

import torch
from torch import nn


class BlurRouter(nn.Module):
    """Attention-pooled MLP classifier on the bottleneck (paper Fig. 3, released layout).

    1x1 conv -> BatchNorm2d -> ReLU -> Dropout2d; a 1x1 conv + sigmoid spatial attention map
    multiplies those features; global average pool -> Linear -> BatchNorm1d -> ReLU -> Dropout
    -> Linear. Returns logits; the model applies the softmax.

    Shape: (B, C_in, h, w) -> (B, num_classes).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        hidden: int = 128,
        spatial_dropout: float = 0.2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(spatial_dropout),
        )
        self.attention = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and features.shape[0] < 2:
            raise ValueError(
                "the router's BatchNorm needs a batch of at least 2 images in training mode "
                f"(got {features.shape[0]}); use a larger batch, or call model.eval() for inference"
            )
        reduced = self.reduce(features)  # (B, channels, h, w)
        attended = reduced * self.attention(reduced)  # (B, channels, h, w)
        return self.classifier(attended)  # (B, num_classes)
