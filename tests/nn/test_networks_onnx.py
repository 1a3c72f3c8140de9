"""ONNX export of a family with FFTs (FFTformer's 8x8 patch spectra): onnxruntime agrees with
eager PyTorch. (All eight families were checked the same way once; docs/model.md, ONNX.)"""

import pytest
import torch

from demoe.export import OnnxDeblurModel, export_onnx
from test_networks import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_fftformer_exports_to_onnx(tmp_path):
    name, task = "fftformer", "auto"
    model = tiny_model(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", task=task, size=(32, 32))
    runner = OnnxDeblurModel(path, threads=1)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x, task=task).image
    torch.testing.assert_close(runner(x, task=task).image, expected, atol=1e-5, rtol=0)
