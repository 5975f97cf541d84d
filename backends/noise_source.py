"""Where a noisy backend's noise comes from: the settings every noisy simulator takes, and the
device or parametric noise they describe.

``aer_noisy``, ``aer_noisy_exact`` and ``noisy_trajectories`` share one list of noise settings
(:data:`NOISE_SETTINGS`), one reading of them (:class:`NoiseSource`: a fake device's calibration
times ``noise_scale``, or parametric noise on its coupling map and basis) and one transpilation
to the full device's ISA (:func:`noisy_pass_manager`), so their results differ only by how they
simulate.
"""

from __future__ import annotations

import inspect

from backends import BackendHandle
from backends.devices import ALL_TO_ALL, DEFAULT_DEVICE
from hybrid_qiskit.errors import HybridQiskitError

GENERIC_BASIS = ("cx", "rz", "sx", "x")
PARAMETRIC = ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2", "gate_time_1q", "gate_time_2q")
# The settings both noisy backends take, with their defaults (T1/T2 in µs, gate times in ns).
NOISE_SETTINGS = {
    "device": DEFAULT_DEVICE,
    "noise_scale": 1.0,
    "depolarizing": None,
    "depolarizing_2q": None,
    "readout_error": None,
    "t1": None,
    "t2": None,
    "gate_time_1q": 50.0,
    "gate_time_2q": 300.0,
    "optimization_level": 1,
    "seed": None,
}


def takes_noise_settings(**own):
    """Give a ``**settings`` factory the keyword-only signature the registry lists: its own
    settings, then :data:`NOISE_SETTINGS` (one list for both noisy backends)."""

    def wrap(factory):
        params = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in {**own, **NOISE_SETTINGS}.items()
        ]
        factory.__signature__ = inspect.Signature(params, return_annotation=BackendHandle)
        return factory

    return wrap


class NoiseSource:
    """Where a handle's noise comes from, and how to build it for a (reduced) device."""

    def __init__(self, settings: dict):
        from backends.devices import describe_device, get_fake_backend
        from backends.noise import device_noise_summary, parametric_noise

        self.scale = settings["noise_scale"]
        device = settings["device"]
        self.backend = None if device == ALL_TO_ALL else get_fake_backend(device)
        if self.backend is None:
            one_q, two_q = ["rz", "sx", "x"], ["cx"]
            self.target = {"name": ALL_TO_ALL, "basis_gates": list(GENERIC_BASIS), "coupling": "all-to-all"}
        else:
            self.target = describe_device(self.backend)
            two_q = self.target["two_qubit_gates"]
            one_q = [g for g in self.target["basis_gates"] if g not in two_q]
        given = {k: settings[k] for k in PARAMETRIC if settings[k] is not None}
        parametric = self.backend is None or any(
            k in given for k in ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2")
        )
        # Parametric noise is the same on every qubit: one spec serves the full and any reduced
        # device. Device noise is built per reduced device, from its own calibration.
        self.fixed = (
            parametric_noise(one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=self.scale, **given)
            if parametric
            else None
        )
        self.summary = self.fixed.summary if parametric else device_noise_summary(self.backend, self.scale)

    def on(self, device):
        """The NoiseSpec of ``device`` (a reduced device of :attr:`backend`)."""
        from backends.noise import device_noise

        return self.fixed if self.fixed is not None else device_noise(device, self.scale)

    def estimator(self, make):
        """``make(NoiseSpec)`` on the reduced device of each circuit (all-to-all: directly)."""
        from backends.reduced import ReducedDeviceEstimator

        if self.backend is None:
            return make(self.fixed)
        return ReducedDeviceEstimator(self.backend, lambda reduced: make(self.on(reduced)))


def noisy_pass_manager(backend, optimization_level: int, seed):
    from qiskit.transpiler import generate_preset_pass_manager

    from backends.devices import guard_width

    if optimization_level not in (0, 1, 2, 3):
        raise HybridQiskitError(
            f"optimization_level must be 0, 1, 2 or 3, got {optimization_level}"
        )
    if backend is None:
        return generate_preset_pass_manager(
            optimization_level=optimization_level,
            basis_gates=list(GENERIC_BASIS),
            seed_transpiler=seed,
        )
    return guard_width(
        generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        ),
        backend,
    )


# Aer's noisy methods by width (measured: experiments/bench_backends.py --aer-widths; one bound
# digits head on reduced fake_fez, 1,024 shots, 2 cores, the other one busy): the density matrix
# took 0.27 s per image at 8 qubits, 0.61 s at 10 and 8.0 s at 12; statevector trajectories (one
# per shot) 1.3 s at 10, 6.0 s at 12, 23 s at 14 and 35 s at 16. So ``auto`` takes the density
# matrix up to 10 qubits, trajectories up to 13, and past that refuses in favour of
# ``noisy_trajectories`` (20 images at 16 qubits would be 12 minutes on Aer; 0.1 s there).
DENSITY_MATRIX_QUBITS = 10
AER_TRAJECTORY_QUBITS = 13
# The exact noisy expectation is a density matrix whatever the width: 4**12 entries took 8 s.
EXACT_QUBITS = 12


def aer_method(backend: str, num_qubits: int, method: str = "auto", *, twirled: bool = False) -> str:
    """Aer's method for a ``num_qubits`` circuit on ``backend`` (aer_noisy, aer_noisy_exact or
    ibm_local): ``method`` itself unless ``auto``. ``twirled``: many executions of few shots each
    (the runtime's twirling), where trajectories beat the density matrix at any width.

    Raises:
        HybridQiskitError: one line, before anything is allocated, for a width past what Aer
            simulates here in reasonable time, naming the backend that can run it.
    """
    if method != "auto":
        return method
    limit = EXACT_QUBITS if backend == "aer_noisy_exact" else AER_TRAJECTORY_QUBITS
    if num_qubits > limit:
        how = ("is a density matrix of 4**{n} entries" if backend == "aer_noisy_exact" else
               "takes Aer's statevector trajectories about 23 s per image at 14 qubits and 35 s at 16 (1,024 shots)")
        forced = ", or --backend-setting method=statevector to run it anyway" if backend == "aer_noisy" else ""
        raise HybridQiskitError(
            f"{backend}: a {num_qubits}-qubit circuit {how.format(n=num_qubits)}, past the {limit} qubits it "
            f"runs here; use --backend noisy_trajectories (the same device noise as Pauli trajectories, a "
            f"matrix-product state for chain heads: under a second per 100 images at 24 qubits){forced}"
        )
    if backend == "aer_noisy_exact":
        return "density_matrix"
    return "density_matrix" if num_qubits <= DENSITY_MATRIX_QUBITS and not twirled else "statevector"
