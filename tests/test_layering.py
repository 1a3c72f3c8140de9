"""The package's shape: imports go one way (`demoe.checkpoints`, the model-directory file
format, and the layers in `demoe.nn` never import `demoe.model`; `demoe.model` imports them),
and no function is longer than 80 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import demoe.checkpoints

PACKAGE = Path(demoe.checkpoints.__file__).parent  # src/demoe


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names, in functions too (`from demoe import
    model` names demoe and demoe.model)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_model(name: str) -> bool:
    return name == "demoe.model" or name.startswith("demoe.model.")


@pytest.mark.parametrize(
    "path", [PACKAGE / "checkpoints.py", *sorted((PACKAGE / "nn").glob("*.py"))], ids=lambda path: path.name
)
def test_the_file_format_and_the_layers_never_import_the_model(path):
    assert not [name for name in imported_modules(path) if _is_model(name)]


def test_the_model_imports_the_file_format():
    assert {"demoe.config", "demoe.fileio"} <= imported_modules(PACKAGE / "checkpoints.py")
    assert "demoe.checkpoints" in imported_modules(PACKAGE / "model.py")
    assert "demoe.checkpoints" in imported_modules(PACKAGE / "nn" / "dense.py")


def test_importing_checkpoints_loads_no_network():
    code = (
        "import sys, demoe.checkpoints\n"
        "print(sorted(m for m in sys.modules if m == 'demoe.model' or m.startswith('demoe.nn')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_functions_that_moved_to_the_model_still_import_from_checkpoints():
    import demoe.model
    from demoe.checkpoints import convert_official, convert_official_state_dict, create_model, load_model

    assert load_model is demoe.model.load_model is demoe.load_model
    assert create_model is demoe.model.create_model is demoe.create_model
    assert convert_official is demoe.model.convert_official
    assert convert_official_state_dict is demoe.model.convert_official_state_dict
    with pytest.raises(AttributeError, match="no_such_name"):
        demoe.checkpoints.no_such_name


MAX_FUNCTION_LINES = 80


def test_no_function_of_the_package_is_longer_than_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
