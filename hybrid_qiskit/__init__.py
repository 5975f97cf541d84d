"""hybrid_qiskit: a LeNet CNN feeding a Qiskit EstimatorQNN head, on exact, noisy and IBM backends.

The public API is the names in ``__all__``; everything else is internal. They are imported
lazily (PEP 562): ``import hybrid_qiskit`` loads neither torch nor qiskit, so the CLI's argument
parsing stays fast, and the first use of a name imports the module that defines it.

The names, by task:

* build a model: :class:`QuantumHead` (the quantum layer for your own PyTorch model),
  :func:`create_backend` / :func:`list_backends` (where a head runs), :func:`load_dataset`;
* train and evaluate: :class:`TrainConfig`, :func:`train`, :func:`load_run` (a :class:`Run`),
  :func:`evaluate`;
* hardware: :func:`submit`, :func:`fetch`.

Example:
    >>> import hybrid_qiskit
    >>> hybrid_qiskit.__all__  # doctest: +NORMALIZE_WHITESPACE
    ['QuantumHead', 'Run', 'TrainConfig', 'create_backend', 'evaluate', 'fetch', 'list_backends',
     'load_dataset', 'load_run', 'submit', 'train']
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing alone would add ~2 ms to every CLI call.
# Type checkers read a module-level TYPE_CHECKING by its name.
TYPE_CHECKING = False

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "QuantumHead": "hybrid_qiskit.qnn",
    "Run": "hybrid_qiskit.api",
    "TrainConfig": "hybrid_qiskit.config",
    "create_backend": "backends",
    "evaluate": "hybrid_qiskit.api",
    "fetch": "hybrid_qiskit.api",
    "list_backends": "backends",
    "load_dataset": "hybrid_qiskit.data",
    "load_run": "hybrid_qiskit.api",
    "submit": "hybrid_qiskit.api",
    "train": "hybrid_qiskit.api",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; never imported at run time
    from backends import create_backend, list_backends  # noqa: F401
    from hybrid_qiskit.api import Run, evaluate, fetch, load_run, submit, train  # noqa: F401
    from hybrid_qiskit.config import TrainConfig  # noqa: F401
    from hybrid_qiskit.data import load_dataset  # noqa: F401
    from hybrid_qiskit.qnn import QuantumHead  # noqa: F401


def __getattr__(name: str) -> object:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybrid_qiskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
