"""The import graph keeps its shape: no circles, and each module imports only from the layers below
its own. The contracts are ``[tool.importlinter]`` in pyproject.toml (``lint-imports`` runs the same);
imports inside functions count, so a lazy import cannot hide an arrow that points up."""

from __future__ import annotations

from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_import_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report  # the report names each broken contract and the imports that break it
    assert "0 broken" in report
