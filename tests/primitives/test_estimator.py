"""BatchedStatevectorEstimator as a V2 estimator: PUB shapes, observables, precision, errors."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit.library import efficient_su2, real_amplitudes
from qiskit.primitives import BaseEstimatorV2, StatevectorEstimator
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.primitives import BatchedStatevectorEstimator

XY_SUM = SparsePauliOp.from_list([("XY", 0.7), ("ZX", -0.4), ("YY", 0.2), ("II", 0.1)])
Z0 = SparsePauliOp("IZ")


def _compare(pubs, **run_kw):
    fast = BatchedStatevectorEstimator().run(pubs, **run_kw).result()
    stock = StatevectorEstimator().run(pubs, **run_kw).result()
    assert len(fast) == len(stock)
    for a, b in zip(fast, stock):
        assert a.data.evs.shape == b.data.evs.shape
        np.testing.assert_allclose(a.data.evs, b.data.evs, rtol=0, atol=1e-10)
    return fast


def test_is_a_v2_estimator_and_its_job_is_done():
    est = BatchedStatevectorEstimator()
    assert isinstance(est, BaseEstimatorV2)
    job = est.run([(real_amplitudes(2, reps=1), Z0, np.zeros(4))])
    assert job.status() == JobStatus.DONE and job.done()
    assert job.result()[0].data.evs.shape == ()


@pytest.mark.parametrize(
    "obs_shape,param_shape",
    [((2,), (3, 1)), ((2, 1), (3,)), ((), (4,)), ((2,), ()), ((1, 2), (3, 1)), ((3,), (3,))],
)
def test_pub_broadcasting_matches_stock(obs_shape, param_shape):
    qc = efficient_su2(2, reps=1)
    rng = np.random.default_rng(0)
    pool = [Z0, XY_SUM, SparsePauliOp("YZ")]
    obs = np.empty(obs_shape, dtype=object)
    for i, idx in enumerate(np.ndindex(obs_shape)):
        obs[idx] = pool[i % len(pool)]
    obs = obs.tolist() if obs_shape else pool[1]
    values = rng.uniform(-np.pi, np.pi, param_shape + (qc.num_parameters,))
    result = _compare([(qc, obs, values)])
    assert result[0].data.evs.shape == np.broadcast_shapes(obs_shape, param_shape)


def test_several_pubs_sharing_circuit_and_values_and_not():
    qc = real_amplitudes(3, reps=2)
    rng = np.random.default_rng(1)
    v = rng.uniform(-np.pi, np.pi, (5, qc.num_parameters))
    ops = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 3) for q in range(3)]
    pubs = [(qc, o, v) for o in ops] + [(qc, ops[0], v.copy()), (qc, ops[1], v[:2]), (efficient_su2(3, reps=1), "XYZ")]
    pubs[-1] = (pubs[-1][0], pubs[-1][1], rng.uniform(size=pubs[-1][0].num_parameters))
    _compare(pubs)


def test_non_z_observables_on_complex_and_real_circuits():
    rng = np.random.default_rng(3)
    for qc in (real_amplitudes(2, reps=2), efficient_su2(2, reps=2)):
        v = rng.uniform(-np.pi, np.pi, (4, qc.num_parameters))
        _compare([(qc, [XY_SUM, SparsePauliOp("XX"), SparsePauliOp("YI")], v[:, None, :])])


def test_circuit_without_parameters():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.s(1)
    qc.sx(0)
    _compare([(qc, [SparsePauliOp("ZZ"), XY_SUM])])


def test_positive_precision_adds_noise_of_that_std():
    qc = real_amplitudes(2, reps=1)
    values = np.zeros((20000, qc.num_parameters))  # ⟨ZZ⟩ = 1 exactly on |00⟩
    est = BatchedStatevectorEstimator(seed=11)
    res = est.run([(qc, SparsePauliOp("ZZ"), values)], precision=0.05).result()[0]
    evs = res.data.evs
    assert abs(evs.mean() - 1) < 0.003 and abs(evs.std() - 0.05) < 0.003
    np.testing.assert_array_equal(res.data.stds, 0.05)
    again = BatchedStatevectorEstimator(seed=11).run([(qc, SparsePauliOp("ZZ"), values)], precision=0.05)
    np.testing.assert_array_equal(again.result()[0].data.evs, evs)
    exact = est.run([(qc, SparsePauliOp("ZZ"), values[:3])]).result()[0]
    np.testing.assert_array_equal(exact.data.evs, 1.0)


def test_default_and_per_pub_precision():
    qc = real_amplitudes(2, reps=1)
    est = BatchedStatevectorEstimator(default_precision=0.1, seed=0)
    res = est.run([(qc, Z0, np.zeros(4)), (qc, Z0, np.zeros(4), 0.0)]).result()
    assert res[0].metadata["target_precision"] == 0.1 and res[0].data.evs != 1.0
    assert res[1].data.evs == 1.0


def test_errors():
    qc = real_amplitudes(2, reps=1)
    est = BatchedStatevectorEstimator()
    with pytest.raises(ValueError):
        est.run([(qc, SparsePauliOp("ZZZ"), np.zeros(4))])
    with pytest.raises(ValueError):
        est.run([(qc, Z0, np.zeros(3))])
    with pytest.raises(ValueError):
        est.run([(qc, Z0, np.zeros(4))], precision=-1.0)
    measured = real_amplitudes(2, reps=1)
    measured.measure_all()
    with pytest.raises(ValueError):
        est.run([(measured, Z0, np.zeros(4))]).result()


def test_circuit_compiled_once_per_object():
    qc = real_amplitudes(2, reps=1)
    est = BatchedStatevectorEstimator()
    assert est.program(qc) is est.program(qc)
    assert est.program(qc.copy()) is not est.program(qc)


def test_a_seeded_pub_gives_the_same_noisy_values_every_time():
    """As Qiskit's StatevectorEstimator: a fresh generator from the seed for every PUB."""
    qc = real_amplitudes(2, reps=1)
    values = np.random.default_rng(2).uniform(-3, 3, (4, qc.num_parameters))
    est = BatchedStatevectorEstimator(seed=5)
    pub = (qc, [[Z0], [SparsePauliOp("ZZ")]], values)
    first = est.run([pub], precision=0.1).result()[0].data.evs
    again = est.run([pub, pub], precision=0.1).result()
    np.testing.assert_array_equal(again[0].data.evs, first)
    np.testing.assert_array_equal(again[1].data.evs, first)
    stock = StatevectorEstimator(seed=5).run([pub], precision=0.1).result()[0].data.evs
    np.testing.assert_allclose(first, stock, atol=1e-12)  # the very same draws
    unseeded = BatchedStatevectorEstimator()
    a, b = (unseeded.run([pub], precision=0.1).result()[0].data.evs for _ in range(2))
    assert not np.array_equal(a, b)


def test_noise_on_a_non_hermitian_observable_is_refused():
    qc = QuantumCircuit(1)
    est = BatchedStatevectorEstimator()
    with pytest.raises(ValueError, match="Hermitian"):
        est.run([(qc, 1j * SparsePauliOp("Z"))], precision=0.1).result()


def test_initialize_is_simulated_where_it_starts_its_qubits():
    """Initialize on fresh qubits is state preparation (its resets do nothing on |0⟩)."""
    from qiskit.circuit import Parameter

    x = Parameter("x")
    qc = QuantumCircuit(2)
    qc.initialize([0.5, 0.5, 0.5, 0.5])
    qc.crx(x, 0, 1)
    one = QuantumCircuit(2)
    one.h(0)
    one.initialize("1", 1)  # qubit 1 is still fresh
    obs = [SparsePauliOp("XX"), SparsePauliOp("ZI"), SparsePauliOp("IX")]
    _compare([(qc, obs, [np.pi / 2]), (one, obs)])


def test_non_unitary_resets_fail_in_one_clear_line_before_any_work():
    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    late_init = bell.copy()
    late_init.initialize([0, 1], 0)
    reset = bell.copy()
    reset.reset(0)
    est = BatchedStatevectorEstimator()
    for qc in (late_init, reset):
        with pytest.raises(ValueError, match="reset") as info:
            est.run([(qc, SparsePauliOp("ZZ"))])  # raised by run, not by result()
        assert "\n" not in str(info.value)


def test_delay_is_the_identity_as_in_the_reference():
    """Dynamical decoupling leaves delays in circuits; without noise they are the identity (the
    reference estimator, and this one before, took them so)."""
    from qiskit.circuit import Parameter

    a = Parameter("a")
    qc = QuantumCircuit(2)
    qc.ry(a, 0)
    qc.delay(100, 0)
    qc.cx(0, 1)
    qc.delay(50, 1, unit="ns")
    pub = (qc, SparsePauliOp(["ZZ", "XI"]), [[0.3], [1.2]])
    ours = BatchedStatevectorEstimator().run([pub]).result()[0].data.evs
    reference = StatevectorEstimator().run([pub]).result()[0].data.evs
    np.testing.assert_allclose(ours, reference, atol=1e-12)
