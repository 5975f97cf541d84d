"""Noise-model builders: device noise scaled, parametric noise, readout folding."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp

from backends.devices import get_fake_backend
from backends.noise import NoiseSpec, device_noise, fold_readout, parametric_noise, scale_target
from hybrid_qiskit.errors import HybridQiskitError

GATES = {"one_qubit_gates": ["rz", "sx", "x"], "two_qubit_gates": ["cx"]}


@pytest.fixture(scope="module")
def manila():
    return get_fake_backend("fake_manila")


def test_scale_zero_is_exactly_noiseless(manila):
    assert device_noise(manila, 0).model is None
    assert (
        parametric_noise(**GATES, depolarizing=0.1, readout_error=0.1, t1=50, noise_scale=0).model
        is None
    )


def test_scale_target_multiplies_errors_and_divides_coherence(manila):
    target = manila.target
    scaled = scale_target(target, 2.0)
    assert scaled["cx"][(0, 1)].error == pytest.approx(2 * target["cx"][(0, 1)].error)
    assert scaled["sx"][(3,)].error == pytest.approx(2 * target["sx"][(3,)].error)
    assert scaled["measure"][(2,)].error == pytest.approx(2 * target["measure"][(2,)].error)
    assert scaled["cx"][(0, 1)].duration == target["cx"][(0, 1)].duration
    assert scaled.qubit_properties[1].t1 == pytest.approx(target.qubit_properties[1].t1 / 2)
    assert scaled.qubit_properties[1].t2 == pytest.approx(target.qubit_properties[1].t2 / 2)
    assert target["cx"][(0, 1)].error < scaled["cx"][(0, 1)].error  # the original is untouched
    assert scale_target(target, 1e6)["measure"][(0,)].error == 0.5  # readout clipped


def test_device_noise_summary_scales(manila):
    one, two = device_noise(manila, 1.0), device_noise(manila, 2.0)
    assert one.summary["kind"] == two.summary["kind"] == "device"
    assert two.summary["median_error_2q_cx"] == pytest.approx(2 * one.summary["median_error_2q_cx"])
    assert two.summary["median_t1_us"] == pytest.approx(one.summary["median_t1_us"] / 2)
    assert two.readout_of(0)[0] == pytest.approx(2 * one.readout_of(0)[0])
    assert {"cx", "sx", "measure"} <= set(two.model.noise_instructions)


def test_parametric_noise_instructions():
    spec = parametric_noise(
        **GATES, depolarizing=0.01, depolarizing_2q=0.05, readout_error=0.02, t1=80, t2=60
    )
    assert set(spec.model.noise_instructions) == {"sx", "x", "cx", "measure"}  # rz is virtual
    assert spec.readout_all == (0.02, 0.02)
    assert spec.summary["t2_us"] == 60
    assert parametric_noise(**GATES).model is None  # nothing asked for: noiseless


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depolarizing": 1.5},
        {"readout_error": -0.1},
        {"t1": 50, "t2": 120},
        {"t1": -1},
        {"noise_scale": -1},
    ],
)
def test_parametric_noise_rejects_unphysical(kwargs):
    with pytest.raises(HybridQiskitError):
        parametric_noise(**GATES, **kwargs)


def test_fold_readout_single_and_product_terms():
    spec = NoiseSpec(model=None, readout={0: (0.1, 0.3)}, readout_all=(0.05, 0.05))
    folded = fold_readout(SparsePauliOp(["IZ"]), spec).to_matrix()
    # qubit 0: a=0.1, b=0.3 -> (b-a) I + (1-a-b) Z
    expected = (0.2 * SparsePauliOp("II") + 0.6 * SparsePauliOp("IZ")).to_matrix()
    np.testing.assert_allclose(folded, expected)
    zz = fold_readout(SparsePauliOp(["ZZ"]), spec)  # qubit 1 symmetric: 0.9 Z, no offset
    expected = (0.9 * 0.2 * SparsePauliOp("ZI") + 0.9 * 0.6 * SparsePauliOp("ZZ")).to_matrix()
    np.testing.assert_allclose(zz.to_matrix(), expected)
    assert fold_readout(SparsePauliOp(["IZ"]), NoiseSpec(model=None)) == SparsePauliOp(["IZ"])


def test_summary_without_a_model_is_the_models_summary(manila):
    from backends.noise import device_noise_summary

    for scale in (0, 1, 3):
        assert device_noise_summary(manila, scale) == device_noise(manila, scale).summary


def test_one_depolarizing_p_means_every_gate():
    """``depolarizing=p`` alone is p on one- and two-qubit gates (as the noise sweep's level)."""
    spec = parametric_noise(**GATES, depolarizing=0.03)
    assert spec.summary["depolarizing"] == spec.summary["depolarizing_2q"] == 0.03
    assert {"cx", "sx", "x"} <= set(spec.model.noise_instructions)
    assert parametric_noise(**GATES, depolarizing=0.03, depolarizing_2q=0.0).summary["depolarizing_2q"] == 0.0
