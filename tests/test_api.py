"""The public API (``import hybrid_qiskit``): lazy, small, and every example in its docstrings runs."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import hybrid_qiskit


def _modules() -> list[str]:
    """The package, and every module that defines an exported name: their doctests all run."""
    names = {"hybrid_qiskit"}
    for name in hybrid_qiskit.__all__:
        names.add(getattr(hybrid_qiskit, name).__module__)
    return sorted(names)


def test_importing_the_package_loads_neither_torch_nor_qiskit():
    code = ("import sys, hybrid_qiskit; hybrid_qiskit.__all__; "
            "print(sorted(m for m in ('torch', 'qiskit', 'backends') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_exported_name_resolves_and_has_a_runnable_example():
    for name in hybrid_qiskit.__all__:
        obj = getattr(hybrid_qiskit, name)
        assert obj.__name__ == name
        assert ">>> " in (obj.__doc__ or ""), f"{name}'s docstring has no example"
    assert set(hybrid_qiskit.__all__) <= set(dir(hybrid_qiskit))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        hybrid_qiskit.nothing_here  # noqa: B018
    # Submodules still import as before (the lazy names do not shadow them).
    from hybrid_qiskit import runs, training  # noqa: F401


@pytest.mark.parametrize("module", _modules())
def test_doctests(module, monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))  # job index of the examples
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    tests = [t for t in doctest.DocTestFinder().find(mod) if t.examples]
    assert tests, f"{module} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
