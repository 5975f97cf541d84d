"""qiskit-ibm-runtime's local testing mode: the runtime's own Estimator on a fake device.

The offline stand-in for a QPU: the same executor-based ``Estimator``, options (shots,
resilience level, twirling, dynamical decoupling) and job/session/batch modes as
``ibm_runtime``. Circuits are transpiled for the FULL device (the layout a QPU job would use);
each job then runs on the reduced device of the qubits the circuit touches
(:mod:`backends.reduced`), given to the runtime's Estimator as ``mode=`` in the form of the Aer
simulator built from it (``AerSimulator.from_backend``, method chosen below), so TREX, ZNE, twirling
and DD run the runtime's own code while memory and time follow the head's width, not the
device's 120-156 qubits. Local mode has no queue: a session or batch is recorded (and closed)
like on hardware, and its jobs run one by one on the reduced device.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("ibm_local", device="fake_fez", shots=256, seed=1)
    >>> handle.description["estimator"]
    'qiskit_ibm_runtime.executor_estimator.Estimator (local testing mode, Aer, reduced device)'
"""

from __future__ import annotations

from dataclasses import replace

from backends.registry import BackendHandle, register_backend
from backends.settings import IbmLocalSettings

DEFAULT_DEVICE = "fake_fez"


def _simulator(reduced, method: str):
    """The reduced device as the Aer simulator that local mode runs, with an explicit method.

    Local mode would build ``AerSimulator.from_backend(device)`` with Aer's ``automatic`` method.
    Which method is fastest depends on the shots each circuit execution gets (measured on 10
    images, 8 qubits, fake_fez, 1024 shots): without twirling, every parameter set gets all its
    shots and a density matrix, evolved once and sampled, took 1.7 s against 5.0 s; with TREX's
    measurement twirling (16 randomizations of 64 shots), per-shot statevector trajectories took
    23 s against 62 s for 160 density matrices.
    """
    from qiskit_aer import AerSimulator

    return AerSimulator.from_backend(reduced, method=method)


@register_backend(
    "ibm_local",
    summary="qiskit-ibm-runtime local testing mode on a fake device (offline QPU stand-in)",
    settings=IbmLocalSettings,
)
def ibm_local(
    *,
    device: str = DEFAULT_DEVICE,
    shots: int = 1024,
    optimization_level: int = 1,
    resilience_level: int = 1,
    mode: str = "job",
    twirling: bool | None = None,
    dynamical_decoupling: bool | str | None = None,
    layout: str | None = "noise_aware",
    max_execution_time: int | None = None,
    seed: int | None = None,
) -> BackendHandle:
    """The runtime Estimator in local mode on fake device ``device`` (settings as ``ibm_runtime``).

    ``seed`` seeds the transpiler and the local simulator (sampling and twirling draws).
    ``device`` may also name a QPU (``ibm_fez``): with an account, its configuration and current
    calibration are read (nothing is sent) and the rehearsal runs on them, so the layout, the
    errors and the cost are those a job sent now would get.

    Raises:
        HybridQiskitError: an unknown device or a bad setting.
    """
    from qiskit_ibm_runtime.executor_estimator import Estimator

    from backends.devices import describe_device, get_fake_backend
    from backends.ibm_runtime import runtime_handle
    from backends.noise_source import (
        AER_FAST_QUBITS,
        CALL_SECONDS,
        DENSITY_MATRIX_QUBITS,
        aer_method,
    )
    from backends.reduced import ReducedDeviceEstimator
    from hybrid_qiskit.memory import check_shots
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    if str(device).startswith("ibm_"):  # a QPU: rehearse on its live calibration (needs an account)
        from backends.ibm_runtime import live_snapshot

        backend = live_snapshot(device)
    else:
        backend = get_fake_backend(device)
    handle = runtime_handle(
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
        layout=layout,
        max_execution_time=max_execution_time,
        extra={
            "target": describe_device(backend),
            "noise": {"kind": "device", "device": backend.name,
                      **({"calibration": f"live, {backend.calibrated_at}"} if hasattr(backend, "calibrated_at") else {})},
        },
    )
    full = handle.estimator
    twirled = resilience_level >= 1 or bool(twirling)  # many executions of few shots each
    method = "statevector" if twirled else "density_matrix"  # narrow heads; wider: aer_method

    def make(reduced):
        # A fresh runtime Estimator per job, on the reduced device, with the handle's options as
        # they are at that moment (submit sets job tags after the handle is built).
        chosen = aer_method("ibm_local", reduced.num_qubits, twirled=twirled)
        return Estimator(mode=_simulator(reduced, chosen), options=full.options)

    def check(num_qubits, pubs):
        # A call too long or too large for Aer is refused in one line before the simulator is built.
        check_shots("ibm_local", shots)
        aer_method("ibm_local", num_qubits, twirled=twirled, shots=shots,
                   images=sum(max(1, pub.parameter_values.size) for pub in pubs))

    estimator = ReducedDeviceEstimator(backend, make, cache_inner=False, options=full.options, check=check)
    estimator.mode = full.mode  # the Session/Batch that close() ends, as on hardware
    return replace(
        handle,
        estimator=estimator,
        gradient=BatchedParamShiftEstimatorGradient(estimator, precision=handle.precision),
        description={
            **handle.description,
            "estimator": handle.description["estimator"].replace("Aer)", "Aer, reduced device)"),
            "simulated": "only the physical qubits the circuit touches (reduced device)",
            "simulator_method": f"{method} up to {DENSITY_MATRIX_QUBITS} qubits; statevector trajectories to "
                                f"{AER_FAST_QUBITS}, matrix-product state wider",
            "simulator_limit": f"calls estimated over {CALL_SECONDS:.0f} s on Aer are refused "
                               "(backends.noise_source.aer_method)",
        },
    )
