"""Sphinx configuration: the API reference (autodoc + napoleon, from the docstrings), the guides
(Markdown, myst) and the tutorials (notebooks, shown as committed: CI executes them separately,
tests/e2e/test_tutorials.py).

Build: ``.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html`` (after
``pip install -e ".[docs]"``); ``.ci/run`` does, with warnings as errors.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # hybrid_qiskit and backends, installed or not

project = "hybrid_qiskit"
author = "the hybrid_qiskit authors"
copyright = "the hybrid_qiskit authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_nb",  # Markdown (myst-parser) and notebooks
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Notebooks are rendered as committed; running them is the tutorial test's job (nbclient), so the
# docs build stays a few seconds and needs no kernel.
nb_execution_mode = "off"
myst_heading_anchors = 3  # README-style links to a section: guide.md#a-heading
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "hybrid_qiskit"
html_theme_options = {"description": "A LeNet CNN and a Qiskit quantum head, on simulators and IBM Quantum"}
