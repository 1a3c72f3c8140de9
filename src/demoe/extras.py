"""The optional parts of demoe and the pip extra that installs each.

`pip install demoe` installs what deblurring needs (torch, numpy, Pillow, tifffile, OpenCV,
safetensors, tqdm): `import demoe`, `demoe deblur`, `demoe classify`, `demoe data`,
`demoe convert-official`. The other commands need an extra:

| extra   | for                                              | installs                          |
|---------|--------------------------------------------------|-----------------------------------|
| `web`   | `demoe demo`                                     | gradio                            |
| `train` | `demoe train`                                    | pyyaml, tensorboard               |
| `eval`  | `demoe eval`, `demoe metrics`, `demoe analyze`   | scipy, matplotlib, scikit-learn   |
| `onnx`  | `demoe export onnx`                              | onnx, onnxruntime, onnxscript     |
| `video` | video files in `demoe deblur` / `demoe classify` | av (PyAV)                         |

`[all]` installs every extra. The modules of an optional part import their packages at the top
(a hard dependency of that part); the `demoe` command turns the `ModuleNotFoundError` of a
missing one into one line naming the extra (`missing_extra_message`).
"""

from __future__ import annotations

# top-level module name -> the extra that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    "gradio": "web",
    "yaml": "train",
    "tensorboard": "train",
    "scipy": "eval",
    "matplotlib": "eval",
    "sklearn": "eval",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "av": "video",
}


def extra_for(error: ModuleNotFoundError) -> str | None:
    """The extra that installs the module `error` failed to import, or None when no extra does
    (then the error is a bug or a broken install, not a missing option)."""
    top_level = (error.name or "").split(".")[0]
    return EXTRA_OF_MODULE.get(top_level)


def missing_extra_message(error: ModuleNotFoundError) -> str:
    """One line: which module is missing and the pip command that installs it.

    >>> missing_extra_message(ModuleNotFoundError("No module named 'gradio'", name="gradio"))
    "needs the optional package 'gradio', installed by the [web] extra: pip install 'demoe[web]'"
    """
    extra = extra_for(error)
    if extra is None:
        raise ValueError(f"no demoe extra installs {error.name!r}")
    package = error.name.split(".")[0]
    return f"needs the optional package {package!r}, installed by the [{extra}] extra: pip install 'demoe[{extra}]'"
