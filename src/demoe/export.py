"""ONNX export of a demoe model, and an onnxruntime runner that is called like the model.

Two kinds of graph:
- a fixed task (`task="defocus"`, ...): every MoE block runs only that task's expert, so the
  graph costs what the NAFNet baseline costs (plus the small router head, whose probabilities
  are an output). Routing is static, no data-dependent control flow.
- `task="auto"`: the graph computes the router, its top-k weights, and then runs ALL experts of
  every MoE block and mixes them with those weights (zeros switch experts off arithmetically).
  Outputs are the same as eager top-k routing, but the cost is higher: for the `demoe` preset at
  256x256 19.2 G MACs vs 10.8 G for a fixed-task graph (5 experts instead of 1 in 5 blocks). ONNX
  has no cheap way to send each image of a batch to its own expert (an `If` node would only work
  for batch 1 and nest five branches), so for speed with automatic routing run the router in
  eager PyTorch (sparse routing) or classify first and then run a fixed-task graph.

Graph inputs/outputs (names are a contract):
    input  "image"          (B, 3, H, W) float32 in [0, 1]
    output "restored"       (B, 3, H, W) float32 (not clamped)
    output "router_probs"   (B, E) softmax of the router        (models with a router only)
    output "expert_weights" (B, E) weights the MoE blocks used   (MoE models only)
The model config and the export settings are stored in the graph's metadata (`demoe.*` keys), so
`OnnxDeblurModel(path)` needs no other file.

Example:
    >>> from demoe import create_model
    >>> from demoe.export import export_onnx, OnnxDeblurModel
    >>> model = create_model("demoe-tiny").eval()
    >>> export_onnx(model, "tiny.onnx", task="defocus", size=(64, 64))   # doctest: +SKIP
    >>> runner = OnnxDeblurModel("tiny.onnx")                              # doctest: +SKIP
    >>> out = runner(torch.rand(1, 3, 64, 64), task="defocus")             # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from demoe.config import ModelConfig
from demoe.model import DeblurOutput, DeblurUNet

INPUT_NAME = "image"
OPSET = 18  # LayerNormalization (opset 17+) keeps the channels_last layer norm one node


class ExportWrapper(nn.Module):
    """`model(x, task, top_k)` as a function of x alone returning a tuple of tensors.

    With a task name the model's routing plan is static (one expert per MoE block, no host
    sync), so the traced graph holds only that expert. With "auto" the model is traced on its
    dense path (see `DeblurUNet._dense_or_plan`): all experts, top-k weights.
    """

    def __init__(self, model: DeblurUNet, task: str = "auto", top_k: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        config = self.model.config
        if not config.is_moe:
            out = self.model(x)
        elif self.task == "auto":
            out = self.model(x, task="auto", top_k=self.top_k or config.top_k)
        else:
            out = self.model(x, task=self.task)
        outputs = [out.image]
        if out.router_probs is not None:
            outputs.append(out.router_probs)
        if out.expert_weights is not None:
            outputs.append(out.expert_weights)
        return tuple(outputs)


def output_names(config: ModelConfig) -> list[str]:
    names = ["restored"]
    if config.router:
        names.append("router_probs")
    if config.is_moe:
        names.append("expert_weights")
    return names


def export_onnx(
    model: DeblurUNet,
    path: str | os.PathLike,
    task: str = "auto",
    top_k: int | None = None,
    size: tuple[int, int] = (256, 256),
    dynamic: bool = False,
    channels_last: bool = True,
) -> Path:
    """Export `model` (put in eval mode) to an ONNX file at `path`; returns the path.

    task: "auto" or a task name (MoE models); baselines only accept "auto".
    top_k: experts per image for "auto" (default: the config's top_k); must be None otherwise.
    size: (H, W) of the example input; with `dynamic=False` the graph only accepts that size.
    dynamic: batch, height and width become symbolic (any size; padding is in the graph).
    channels_last: trace the model in channels_last memory, so each LayerNorm2d becomes one
        LayerNormalization node (faster in onnxruntime than the reduce/sub/pow chain).
    """
    config = model.config
    if task != "auto":
        if not config.is_moe:
            raise ValueError("this model has no experts: export it with task='auto'")
        model.task_index(task)  # ValueError listing the valid names
        if top_k is not None:
            raise ValueError("top_k only applies to task='auto'")
    if top_k is not None and not 1 <= top_k <= config.num_experts:
        raise ValueError(f"top_k must be in 1..{config.num_experts}, got {top_k}")
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    model = copy.deepcopy(model).eval()  # the caller's model keeps its memory format
    parameter = next(model.parameters())
    # A dynamic batch is traced with 2 images: torch.export specialises sizes 0 and 1.
    example = torch.rand(2 if dynamic else 1, config.image_channels, height, width, dtype=parameter.dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    wrapper = ExportWrapper(model, task, top_k).eval()
    dynamic_shapes = None
    if dynamic:
        batch_dim = torch.export.Dim("batch", min=1, max=1024)
        height_dim = torch.export.Dim("height", min=1, max=65536)
        width_dim = torch.export.Dim("width", min=1, max=65536)
        dynamic_shapes = {"x": {0: batch_dim, 2: height_dim, 3: width_dim}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=output_names(config),
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    metadata = {
        "demoe.config": json.dumps(config.to_dict()),
        "demoe.task": task,
        "demoe.top_k": str(top_k or config.top_k) if task == "auto" and config.is_moe else "",
        "demoe.dynamic": "1" if dynamic else "0",
        "demoe.size": f"{height},{width}",
    }
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))
    return path


class OnnxDeblurModel:
    """An exported graph run by onnxruntime (CPU), called like `DeblurUNet`.

    `runner(x, task=..., top_k=None)` with x (B, 3, H, W) float in [0, 1] returns a
    `DeblurOutput`; `task` must be the exported task ("auto" graphs: "auto" with the exported
    top_k). With a fixed-size graph x must have the exported size. `config` is the model config.

    `OnnxDeblurModel.from_model(model, task, ...)` exports into a temporary file and checks on
    a random probe that the graph agrees with eager PyTorch (max abs difference <= `tolerance`),
    raising ValueError otherwise; use it to swap in onnxruntime as an inference engine.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        metadata = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        if "demoe.config" not in metadata:
            raise ValueError(f"{path} was not written by `demoe export onnx` (no demoe.config metadata)")
        self.path = path
        self.config = ModelConfig.from_dict(json.loads(metadata["demoe.config"]))
        self.task = metadata["demoe.task"]
        self.top_k = int(metadata["demoe.top_k"]) if metadata["demoe.top_k"] else None
        self.dynamic = metadata["demoe.dynamic"] == "1"
        self.size = tuple(int(v) for v in metadata["demoe.size"].split(","))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.config.task_names

    @classmethod
    def from_model(
        cls,
        model: DeblurUNet,
        task: str = "auto",
        top_k: int | None = None,
        size: tuple[int, int] = (256, 256),
        dynamic: bool = True,
        threads: int | None = None,
        tolerance: float = 1e-4,
        directory: str | os.PathLike | None = None,
    ) -> "OnnxDeblurModel":
        """Export `model` (to `directory`, default a new temporary folder) and verify it."""
        directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="demoe-onnx-"))
        path = export_onnx(model, directory / f"demoe-{task}.onnx", task=task, top_k=top_k, size=size, dynamic=dynamic)
        runner = cls(path, threads=threads)
        probe = torch.rand(1, model.config.image_channels, *size)
        difference = max_abs_difference(model, runner, probe, task=task, top_k=top_k)
        if difference > tolerance:
            raise ValueError(
                f"ONNX graph disagrees with eager PyTorch by {difference:.3g} (> {tolerance:g}); "
                "keep the PyTorch engine for this model"
            )
        return runner

    def __call__(self, x: torch.Tensor, task: str = "auto", top_k: int | None = None) -> DeblurOutput:
        if x.ndim != 4 or x.shape[1] != self.config.image_channels:
            raise ValueError(f"expected x of shape (B, {self.config.image_channels}, H, W), got {tuple(x.shape)}")
        if task != self.task:
            raise ValueError(
                f"this ONNX graph was exported for task {self.task!r}, not {task!r}; "
                f"export one with `demoe export onnx --task {task} OUT.onnx`"
            )
        if top_k is not None and top_k != self.top_k:
            raise ValueError(f"this ONNX graph was exported with top_k={self.top_k}, not {top_k}")
        if not self.dynamic and (tuple(x.shape[-2:]) != self.size or x.shape[0] != 1):
            raise ValueError(
                f"this ONNX graph has a fixed input (1, 3, {self.size[0]}, {self.size[1]}), got "
                f"{tuple(x.shape)}; export with --dynamic for any size"
            )
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        results = dict(zip(self.output_names, self.session.run(None, {INPUT_NAME: array})))
        device = x.device

        def tensor(name: str) -> torch.Tensor | None:
            return torch.from_numpy(results[name]).to(device) if name in results else None

        return DeblurOutput(
            image=tensor("restored"),
            router_probs=tensor("router_probs"),
            router_logits=None,  # not exported: inference needs only the probabilities
            expert_weights=tensor("expert_weights"),
            task_names=self.task_names,
        )


def max_abs_difference(
    model: DeblurUNet, runner: OnnxDeblurModel, x: torch.Tensor, task: str = "auto", top_k: int | None = None
) -> float:
    """Largest |eager - onnxruntime| over the restored image, router probs and expert weights."""
    wrapper = ExportWrapper(model.eval(), task, top_k)
    with torch.inference_mode():
        expected = wrapper(x)
    got = runner(x, task=task, top_k=top_k if task == "auto" else None)
    pairs = [(expected[0], got.image)]
    if got.router_probs is not None:
        pairs.append((expected[1], got.router_probs))
    if got.expert_weights is not None:
        pairs.append((expected[-1], got.expert_weights))
    return max(float((a.float() - b.float()).abs().max()) for a, b in pairs)


__all__ = ["ExportWrapper", "OnnxDeblurModel", "export_onnx", "max_abs_difference", "output_names"]
