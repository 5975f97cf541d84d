"""qiskit-ibm-runtime's local testing mode: the runtime's own Estimator on a fake device.

The offline stand-in for a QPU: the same executor-based ``Estimator``, options (shots,
resilience level, twirling, dynamical decoupling) and job/session/batch modes as
``ibm_runtime``, with ``mode`` a fake device, so the runtime simulates the job on Aer with the
device's noise model. Tests and demos use it; no account is needed.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("ibm_local", device="fake_manila", shots=256, seed=1)
    >>> handle.description["estimator"]
    'qiskit_ibm_runtime.executor_estimator.Estimator (local testing mode, Aer)'
"""

from __future__ import annotations

from backends import BackendHandle, register_backend


@register_backend(
    "ibm_local",
    summary="qiskit-ibm-runtime local testing mode on a fake device (offline QPU stand-in)",
)
def ibm_local(
    *,
    device: str = "fake_manila",
    shots: int = 1024,
    optimization_level: int = 1,
    resilience_level: int = 1,
    mode: str = "job",
    twirling: bool | None = None,
    dynamical_decoupling: bool | str | None = None,
    seed: int | None = None,
) -> BackendHandle:
    """The runtime Estimator in local mode on fake device ``device`` (settings as ``ibm_runtime``).

    ``seed`` seeds the transpiler and the local simulator (sampling and twirling draws).

    Raises:
        HybridQiskitError: an unknown device or a bad setting.
    """
    from backends.devices import describe_device, get_fake_backend
    from backends.ibm_runtime import runtime_handle

    backend = get_fake_backend(device)
    return runtime_handle(
        "ibm_local",
        backend,
        shots=shots,
        optimization_level=optimization_level,
        resilience_level=resilience_level,
        mode=mode,
        twirling=twirling,
        dynamical_decoupling=dynamical_decoupling,
        seed=seed,
        local=True,
        extra={
            "target": describe_device(backend),
            "noise": {"kind": "device", "device": backend.name},
        },
    )
