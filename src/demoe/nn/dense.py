"""The call convention of the dense comparison networks (paper Table 1), shared with DeblurUNet.

Restormer, PromptIR, FFTformer and SFHformer have no router and no experts. They are called
like DeMoE, `model(x)` -> `DeblurOutput`, so that `demoe train`, `demoe eval`, `demoe cost`,
the inference pipeline and the ONNX export handle every network alike: the input is
zero-padded right/bottom to `config.size_multiple`, restored, and cropped back; the router and
expert fields of the output are None.

Legend: B batch, H/W image height/width.
"""

from __future__ import annotations

import torch

from demoe.checkpoints import PretrainedNetwork
from demoe.config import ModelConfig
from demoe.nn.output import DeblurOutput
from demoe.nn.unet import Padding, check_padding, pad_to_multiple


class DenseDeblurNet(PretrainedNetwork):
    """Base of the dense networks: subclasses build their layers from `config`, name the
    `architecture` they build (for `from_pretrained`) and implement `restore(padded)`,
    (B, 3, H', W') -> (B, 3, H', W') with H', W' multiples of `config.size_multiple`, the
    global residual included.

    Call: `model(x)` with x (B, 3, H, W), float in [0, 1], any H, W >= 1.
    """

    router = None  # no blur router: the pipeline and the training loop test for it

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.is_moe or config.router:
            raise ValueError(f"{type(self).__name__} is a dense network: its config needs num_experts=0, router=False")
        self.config = config

    def restore(self, padded: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        task: str | torch.Tensor = "auto",
        top_k: int | None = None,
        padding: Padding = "zeros",
        tlc: bool = False,
    ) -> DeblurOutput:
        """x (B, 3, H, W) in [0, 1] -> DeblurOutput. `task` must be "auto" and `top_k` is
        ignored (no experts); `padding` "zeros" or "replicate" as for DeblurUNet; `tlc` (NAFNet's
        test-time local converter) does not apply to these networks."""
        if x.ndim != 4 or x.shape[1] != self.config.image_channels:
            raise ValueError(f"expected x of shape (B, {self.config.image_channels}, H, W), got {tuple(x.shape)}")
        if not (isinstance(task, str) and task == "auto"):
            raise ValueError("this model has no experts: call it with task='auto'")
        check_padding(padding)
        if tlc:
            self.tlc_window  # ValueError: TLC does not apply
        height, width = x.shape[-2:]
        restored = self.restore(pad_to_multiple(x, self.config.size_multiple, padding))
        return DeblurOutput(
            image=restored[..., :height, :width],
            router_probs=None,
            router_logits=None,
            expert_weights=None,
            task_names=self.config.task_names,
        )

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.config.task_names

    @property
    def tlc_window(self) -> int:
        raise ValueError(
            f"TLC localises NAFBlocks' channel attention; {self.config.architecture} has no NAFBlocks"
        )

    def task_index(self, task: str) -> int:
        raise ValueError(f"this model has no experts: task {task!r} cannot be chosen, only 'auto'")

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
