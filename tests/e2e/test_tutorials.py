"""The tutorials in docs/tutorials/: every notebook runs top to bottom, offline.

Marked ``docs``: executing them needs the ``[docs]`` extra (nbclient, ipykernel) and takes about
a minute and a half on 2 cores; ``.ci/run`` runs them (``pytest -m docs``) after building the
documentation. The notebooks are committed without outputs, which the default tier checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[2] / "docs" / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials_and_they_are_committed_without_outputs():
    assert [p.name for p in TUTORIALS] == ["quantum_head.ipynb", "to_hardware.ipynb"]
    for path in TUTORIALS:
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code, path.name
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), \
            f"{path.name} holds outputs: clear them (the docs show the code; CI runs it)"


@pytest.mark.docs
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # The kernel inherits this environment: the job index and every run the notebook writes stay
    # in tmp_path, and the kernel's own plotting backend applies.
    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PYTHONWARNINGS", os.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning"))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
