"""Where the quantum head runs: the backends, by registry name.

The registry itself is :mod:`backends.registry`; this package hands its names on and imports
every backend module, which registers its factory there (the timm pattern). So
``from backends import create_backend`` finds every backend, and ``create_backend(name,
**settings)`` returns a :class:`BackendHandle`, the only thing model code sees: the same model
runs on every backend, and only the handle differs.

Example:
    >>> from backends import create_backend, list_backends
    >>> handle = create_backend("statevector", seed=7)
    >>> handle.description["name"]
    'statevector'
"""

from __future__ import annotations

# Importing the modules registers their backends.
from backends import aer_noisy, ibm_local, ibm_runtime, noisy_trajectories, statevector  # noqa: F401
from backends.registry import (
    BackendHandle,
    BackendSpec,
    backend_spec,
    create_backend,
    list_backends,
    register_backend,
)

__all__ = [
    "BackendHandle",
    "BackendSpec",
    "backend_spec",
    "create_backend",
    "list_backends",
    "register_backend",
]
