"""The record every deblurring network of demoe returns (DeMoE, NAFNet and the comparison
networks alike), so that inference, evaluation and training handle them the same way.

Legend: B batch, E experts (= blur classes), H/W image height/width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DeblurOutput:
    """What a forward pass returns.

    image: (B, 3, H, W) restored image (not clamped; values near [0, 1]).
    router_probs: (B, E) the router's softmax, also when the experts were chosen manually;
        None for a model without router.
    router_logits: (B, E) the router's logits (for the classification loss), or None.
    expert_weights: (B, E) the mixing weights the MoE blocks used (zeros = expert not run), or
        None for a model without MoE blocks.
    """

    image: torch.Tensor
    router_probs: torch.Tensor | None
    router_logits: torch.Tensor | None
    expert_weights: torch.Tensor | None
    task_names: tuple[str, ...]

    @property
    def experts_used(self) -> list[list[str]]:
        """Per image, the names of the experts that ran for it (largest weight first)."""
        if self.expert_weights is None:
            return [[] for _ in range(self.image.shape[0])]
        host = self.expert_weights.detach().float().cpu()
        used = []
        for row in host:
            order = torch.argsort(row, descending=True, stable=True)
            used.append([self.task_names[int(i)] for i in order if row[int(i)] != 0])
        return used
