"""Qiskit's own ``StatevectorEstimator`` tests, with ``BatchedStatevectorEstimator`` substituted.

Adapted from Qiskit's ``test/python/primitives/test_statevector_estimator.py`` (Apache-2.0,
(C) IBM 2022): the same circuits, values and expected numbers, written as pytest functions. One
deliberate difference: a ``reset`` after gates is refused with a clear error (this estimator
simulates pure states), where Qiskit's samples the reset.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.primitives import BatchedStatevectorEstimator as Estimator


def _wrapped(reps: int) -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.append(real_amplitudes(num_qubits=2, reps=reps), [0, 1])
    return qc


PSI = (_wrapped(2), _wrapped(3))
H1 = SparsePauliOp.from_list([("II", 1), ("IZ", 2), ("XI", 3)])
H2 = SparsePauliOp.from_list([("IZ", 1)])
H3 = SparsePauliOp.from_list([("ZI", 1), ("ZZ", 1)])
THETA = ([0, 1, 1, 2, 3, 5], [0, 1, 1, 2, 3, 5, 8, 13], [1, 2, 3, 4, 5, 6])
OBSERVABLE = SparsePauliOp.from_list(
    [
        ("II", -1.052373245772859),
        ("IZ", 0.39793742484318045),
        ("ZI", -0.39793742484318045),
        ("ZZ", -0.01128010425623538),
        ("XX", 0.18093119978423156),
    ]
)


def test_estimator_run():
    est = Estimator()
    np.testing.assert_allclose(est.run([(PSI[0], H1, [THETA[0]])]).result()[0].data.evs, [1.5555572817900956])
    np.testing.assert_allclose(est.run([(PSI[1], H1, THETA[1])]).result()[0].data.evs, [2.97797666])
    np.testing.assert_allclose(est.run([(PSI[0], [H2, H3], THETA[0])]).result()[0].data.evs, [-0.551653, 0.07535239])
    res = est.run([(PSI[0], [H1, H3], [THETA[0], THETA[2]]), (PSI[1], H2, THETA[1])]).result()
    np.testing.assert_allclose(res[0].data.evs, [1.55555728, -1.08766318])
    np.testing.assert_allclose(res[1].data.evs, [0.17849238])


def test_estimator_with_explicit_pubs():
    pub1 = EstimatorPub(
        PSI[0], ObservablesArray.coerce([H1, H3]), BindingsArray.coerce({tuple(PSI[0].parameters): [THETA[0], THETA[2]]})
    )
    pub2 = EstimatorPub(PSI[1], ObservablesArray.coerce(H2), BindingsArray.coerce({tuple(PSI[1].parameters): THETA[1]}))
    res = Estimator().run([pub1, pub2]).result()
    np.testing.assert_allclose(res[0].data.evs, [1.55555728, -1.08766318])
    np.testing.assert_allclose(res[1].data.evs, [0.17849238])


def test_run_without_parameters():
    circuit = PSI[0].assign_parameters([0, 1, 1, 2, 3, 5])
    np.testing.assert_allclose(Estimator().run([(circuit, OBSERVABLE)]).result()[0].data.evs, [-1.284366511861733])


def test_single_circuit_and_observable_in_every_value_form():
    est = Estimator()
    flipped = QuantumCircuit(1)
    flipped.x(0)
    x = Parameter("x")
    rotated = QuantumCircuit(1)
    rotated.ry(x, 0)
    cases = [(flipped, SparsePauliOp("Z"), v, -1) for v in (None, [], [[]], np.array([]), np.array([[]]), [np.array([])])]
    cases += [(rotated, SparsePauliOp("Z"), v, -1) for v in ([np.pi], np.array([np.pi]))]
    t = THETA[0]
    cases += [(PSI[0], H1, v, 1.5555572817900956) for v in (t, [t], np.array(t), np.array([t]), [np.array(t)])]
    for qc, op, values, target in cases:
        result = est.run([(qc, op, values)]).result()
        np.testing.assert_allclose(result[0].data.evs, [target])
        assert result[0].metadata["target_precision"] == 0


@pytest.mark.parametrize("n", [1, 2])
def test_endianness(n):
    qc, flipped = QuantumCircuit(n), QuantumCircuit(n)
    flipped.x(0)
    est = Estimator()
    cases = [("I" * n, qc, 1), ("I" * n, flipped, 1), ("I" * (n - 1) + "Z", qc, 1), ("I" * (n - 1) + "Z", flipped, -1)]
    if n == 2:
        cases += [("ZI", qc, 1), ("ZI", flipped, 1)]
    for label, circuit, target in cases:
        np.testing.assert_allclose(est.run([(circuit, SparsePauliOp(label))]).result()[0].data.evs, [target])


def test_run_errors():
    qc, qc2 = QuantumCircuit(1), QuantumCircuit(2)
    op, op2 = SparsePauliOp.from_list([("I", 1)]), SparsePauliOp.from_list([("II", 1)])
    est = Estimator()
    for pubs, kwargs in [
        ([(qc, op2)], {}),
        ([(qc, op, [[1e4]])], {}),
        ([(qc2, op2, [[1, 2]])], {}),
        ([(qc, [op, op2], [[1]])], {}),
        ([(qc, op)], {"precision": -1}),
        ([(qc, 1j * op)], {"precision": 0.1}),
    ]:
        with pytest.raises(ValueError):
            est.run(pubs, **kwargs).result()
    with pytest.raises(ValueError, match="An invalid Estimator pub-like was given"):
        est.run((qc, op)).result()


def test_numpy_parameter_arrays():
    op = SparsePauliOp.from_list([("IZ", 1), ("XI", 2), ("ZY", -1)])
    params = np.random.default_rng(12).random((5, PSI[0].num_parameters))
    est = Estimator()
    target = est.run([(PSI[0], op, params.tolist())]).result()[0].data.evs
    for values in (params, list(params)):
        evs = est.run([(PSI[0], op, values)]).result()[0].data.evs
        assert len(evs) == 5
        np.testing.assert_allclose(evs, target)


def test_precision_and_seed():
    est = Estimator(default_precision=1.0, seed=1)
    pub = (PSI[0], H1, [THETA[0]])
    np.testing.assert_allclose(est.run([pub]).result()[0].data.evs, [1.901141473854881])
    res = est.run([pub, pub]).result()  # every PUB draws from a generator seeded afresh
    np.testing.assert_allclose(res[0].data.evs, [1.901141473854881])
    np.testing.assert_allclose(res[1].data.evs, [1.901141473854881])
    np.testing.assert_allclose(est.run([pub], precision=0).result()[0].data.evs, [1.5555572817900956])


def test_iterable_of_pubs():
    circuit = PSI[0].assign_parameters([0, 1, 1, 2, 3, 5])
    observable = OBSERVABLE.apply_layout(circuit.layout)
    res = Estimator().run(iter([(circuit, observable), (circuit, observable)])).result()
    np.testing.assert_allclose(res[0].data.evs, [-1.284366511861733])
    np.testing.assert_allclose(res[1].data.evs, [-1.284366511861733])


def test_metadata():
    qc, qc2 = QuantumCircuit(2), QuantumCircuit(2)
    qc2.metadata = {"a": 1}
    result = Estimator().run([(qc, "ZZ"), (qc2, "ZZ")], precision=0.1).result()
    assert len(result) == 2 and result.metadata == {"version": 2}
    assert result[0].metadata == {"target_precision": 0.1, "circuit_metadata": qc.metadata}
    assert result[1].metadata == {"target_precision": 0.1, "circuit_metadata": qc2.metadata}


def test_reset_after_gates_is_refused_clearly():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.reset(0)
    with pytest.raises(ValueError, match="reset") as info:
        Estimator(seed=12).run([(qc, [SparsePauliOp("ZI")] * 10)])
    assert "\n" not in str(info.value)
