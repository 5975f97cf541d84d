"""Where a noisy backend's noise comes from: the settings every noisy simulator takes, and the
device or parametric noise they describe.

``aer_noisy``, ``aer_noisy_exact`` and ``noisy_trajectories`` share one model of noise settings
(:class:`backends.settings.NoiseSettings`), one reading of them (:class:`NoiseSource`: a fake device's calibration
times ``noise_scale``, or parametric noise on its coupling map and basis) and one transpilation
to the full device's ISA (:func:`noisy_pass_manager`), so their results differ only by how they
simulate. :func:`aer_method` picks Aer's simulation method by width for the Aer-backed ones
(``ibm_local`` too), or refuses a call Aer cannot finish in reasonable time.
"""

from __future__ import annotations

import numpy as np

from backends.devices import ALL_TO_ALL
from hybrid_qiskit.errors import HybridQiskitError

GENERIC_BASIS = ("cx", "rz", "sx", "x")
PARAMETRIC = ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2", "gate_time_1q", "gate_time_2q")


class NoiseSource:
    """Where a handle's noise comes from, and how to build it for a (reduced) device.

    ``settings``: a :class:`backends.settings.NoiseSettings`' values (``model_dump()``), already
    checked: :func:`backends.registry.create_backend` validates them."""

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


def noisy_pass_manager(backend, optimization_level: int, seed, layout="noise_aware"):
    """The pass manager to the full device's ISA, the head placed by ``layout``
    (:mod:`backends.layout`); all-to-all (no device): the preset one on the generic basis."""
    from qiskit.transpiler import generate_preset_pass_manager

    from backends.layout import LayoutPassManager

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
    return LayoutPassManager(backend, optimization_level=optimization_level, seed=seed, layout=layout)


# Aer's noisy methods by width (measured: experiments/bench_backends.py --noisy-widths; one
# digits head on reduced fake_fez, 1,024 shots, 2 cores, the other one busy; seconds per image):
#   qubits                    6      8      10     12     14     16     20     24
#   density matrix            0.045  0.18   0.39   6.2    -      -      -      -
#   statevector trajectories  0.15   0.35   1.4    5.4    24.9   35.4   -      -
#   matrix-product state      -      -      2.9    4.7    6.4    8.7    104    164
# So ``auto`` takes the density matrix up to 10 qubits, statevector trajectories (one per shot)
# at 11-12 and Aer's matrix-product state wider. Past 12 qubits a call runs only when its
# estimated time (:func:`aer_seconds`) stays within :data:`CALL_SECONDS`; else it is refused in
# favour of ``noisy_trajectories`` (100 images at 24 qubits: 4.5 hours on Aer, 1 s there).
DENSITY_MATRIX_QUBITS = 10
AER_FAST_QUBITS = 12  # up to here Aer takes seconds per image; sweeps send wider heads elsewhere
AER_SECONDS = {  # per image at 1,024 shots, from the table above
    "statevector": {10: 1.4, 12: 5.4, 14: 24.9, 16: 35.4},
    "matrix_product_state": {10: 2.9, 12: 4.7, 14: 6.4, 16: 8.7, 20: 104.0, 24: 164.0},
}
CALL_SECONDS = 300.0
# The exact noisy expectation is a density matrix whatever the width: 4**12 entries took 6-8 s.
EXACT_QUBITS = 12


def aer_seconds(method: str, num_qubits: int, images: int, shots: int = 1024) -> float:
    """Estimated seconds of Aer's ``method`` trajectories for ``images`` parameter sets: the
    measured table, interpolated in log scale, extrapolated along its last step."""
    table = AER_SECONDS[method]
    widths = sorted(table)
    logs = np.log([table[w] for w in widths])
    if num_qubits > widths[-1]:
        slope = (logs[-1] - logs[-2]) / (widths[-1] - widths[-2])
        log_per = logs[-1] + slope * (num_qubits - widths[-1])
    else:
        log_per = float(np.interp(num_qubits, widths, logs))
    return float(np.exp(log_per)) * images * shots / 1024


def aer_method(backend: str, num_qubits: int, method: str = "auto", *, twirled: bool = False,
               images: int | None = None, shots: int = 1024) -> str:
    """Aer's method for a ``num_qubits`` circuit on ``backend`` (aer_noisy, aer_noisy_exact or
    ibm_local): ``method`` itself unless ``auto``. ``twirled``: many executions of few shots each
    (the runtime's twirling), where trajectories beat the density matrix at any width.
    ``images``: parameter sets in the call about to run (None: not known yet, nothing refused
    for time).

    Raises:
        HybridQiskitError: one line, before anything is allocated, for a call past what Aer
            simulates here in reasonable time, naming the backend that can run it.
    """
    if method != "auto":
        return method
    use = "--backend noisy_trajectories (the same device noise as Pauli trajectories, a matrix-product state " \
          "for chain heads: about a second per 100 images at 24 qubits)"
    if backend == "aer_noisy_exact":
        if num_qubits > EXACT_QUBITS:
            raise HybridQiskitError(
                f"aer_noisy_exact: a {num_qubits}-qubit circuit is a density matrix of 4**{num_qubits} entries, past "
                f"the {EXACT_QUBITS} qubits it runs here; use {use}")
        return "density_matrix"
    if num_qubits <= DENSITY_MATRIX_QUBITS and not twirled:
        return "density_matrix"
    if num_qubits <= AER_FAST_QUBITS:
        return "statevector"
    if images is not None:
        seconds = aer_seconds("matrix_product_state", num_qubits, images, shots)
        if seconds > CALL_SECONDS:
            forced = (", or --backend-setting method=matrix_product_state to run it anyway"
                      if backend == "aer_noisy" else "")
            raise HybridQiskitError(
                f"{backend}: {images} image(s) of a {num_qubits}-qubit head would take Aer about "
                f"{seconds / 60:.0f} minutes ({aer_seconds('matrix_product_state', num_qubits, 1, shots):.0f} s per "
                f"image, matrix-product-state trajectories, {shots} shots), past the {CALL_SECONDS / 60:.0f} minutes "
                f"allowed per call; use fewer images (--limit, --samples) or {use}{forced}")
    return "matrix_product_state"
