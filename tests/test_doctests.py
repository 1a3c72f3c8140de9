"""The `>>>` examples in demoe's docstrings run as tests: they are documentation users copy, so
they must stay true. One test per module that has examples."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import demoe

PACKAGE_ROOT = Path(demoe.__file__).parent


def _modules_with_examples() -> list[str]:
    """Dotted names of the demoe modules whose source holds a `>>>` example (found by reading
    the files, so collecting this test imports nothing)."""
    names = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.name == "__main__.py" or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    # the finder reads the installed package: an empty list would make the suite below vacuous
    assert "demoe.inference.tiling" in MODULES and "demoe.train.config" in MODULES


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder().find(module)
    assert any(test.examples for test in tests), f"{module_name}: '>>>' outside any docstring"
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)  # examples marked `# doctest: +SKIP` are skipped
    assert runner.summarize(verbose=False).failed == 0, "".join(report)
