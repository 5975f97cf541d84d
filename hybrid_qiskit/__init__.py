"""hybrid_qiskit: a LeNet CNN feeding a Qiskit EstimatorQNN head, on exact, noisy and IBM backends.

The public API is the names in ``__all__``; everything else is internal. They are imported
lazily (PEP 562): ``import hybrid_qiskit`` loads neither torch nor qiskit, so the CLI's argument
parsing stays fast, and the first use of a name imports the module that defines it.

Example:
    >>> import hybrid_qiskit
    >>> "QuantumHead" in hybrid_qiskit.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "QuantumHead": "hybrid_qiskit.qnn",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; never imported at run time
    from hybrid_qiskit.qnn import QuantumHead  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybrid_qiskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
