"""Memory before allocation: the estimate per method, the refusal, and the estimate against a
measured peak (slow tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_qiskit.config import resolve
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.resources import STEP_OVERHEAD, check_config, check_memory, estimate, head_chain

GiB = 2**30


def test_statevector_grows_with_width_and_batch_density_matrix_with_four_to_the_n():
    def states(**kw):  # the part that grows: the estimate less the fixed cost of a step
        return estimate("statevector", **kw).bytes - STEP_OVERHEAD

    base = states(qubits=10, batch=32, eval_batch=32, real=True)
    wider = states(qubits=11, batch=32, eval_batch=32, real=True)
    larger = states(qubits=10, batch=64, eval_batch=64, real=True)
    assert 2 * base <= wider <= 2.3 * base  # (the observables' share grows with the width too)
    assert 1.7 * base <= larger <= 2 * base
    assert states(qubits=10, batch=32, eval_batch=32, real=False) > 2 * base
    dm = estimate("aer_noisy", qubits=9, batch=32).bytes
    assert estimate("aer_noisy", qubits=10, batch=32).bytes == 4 * dm
    forced = {"method": "density_matrix"}
    assert estimate("aer_noisy", qubits=11, batch=32, settings=forced).bytes == 16 * dm
    # Past 10 qubits aer_noisy's auto method is statevector trajectories: 2**n, not 4**n.
    assert estimate("aer_noisy", qubits=11, batch=32).method == "statevector"
    assert estimate("ibm_runtime", qubits=100, batch=32) is None  # a QPU allocates nothing here
    assert estimate("aer_noisy", qubits=40, batch=1, settings={"method": "matrix_product_state"}) is None


def test_refusal_names_the_estimate_and_the_free_memory():
    with pytest.raises(HybridQiskitError) as info:
        check_memory("statevector", qubits=28, batch=2, eval_batch=256, real=True, what="train", available=64 * GiB)
    message = str(info.value)
    assert "28-qubit head" in message and "TiB" in message and "64.0 GiB is free" in message and "\n" not in message
    with pytest.raises(HybridQiskitError, match="needs about.*noisy_trajectories"):
        check_memory("aer_noisy", qubits=16, batch=1, what="evaluate", available=16 * GiB,
                     settings={"method": "density_matrix"})


def test_wide_noisy_heads_get_a_method_or_one_line_naming_noisy_trajectories():
    from backends.noise_source import aer_method

    assert aer_method("aer_noisy", 10) == "density_matrix"
    assert aer_method("ibm_local", 10, twirled=True) == "statevector"
    assert aer_method("aer_noisy", 12) == "statevector"
    assert aer_method("aer_noisy", 16, images=20) == "matrix_product_state"  # about 3 minutes: runs
    for backend in ("aer_noisy", "ibm_local"):
        with pytest.raises(HybridQiskitError, match=f"^{backend}: 100 image.*24-qubit.*273 minutes.*noisy_trajectories") as info:
            aer_method(backend, 24, images=100)
        assert "\n" not in str(info.value)
    with pytest.raises(HybridQiskitError, match="aer_noisy_exact: a 13-qubit.*noisy_trajectories"):
        estimate("aer_noisy_exact", qubits=13, batch=1)
    assert aer_method("aer_noisy", 30, "statevector", images=10**6) == "statevector"  # forced: runs
    # noisy_trajectories: a chain head is a matrix-product state at any width; anything else is
    # statevector trajectories, refused where one trajectory does not fit.
    cfg = resolve(None, qubits=40)
    assert estimate("noisy_trajectories", qubits=40, batch=32, chain=head_chain(cfg)).bytes < GiB
    with pytest.raises(HybridQiskitError, match="40-qubit head on noisy_trajectories"):
        check_memory("noisy_trajectories", qubits=40, batch=32, what="evaluate", available=24 * GiB)


def test_twenty_qubits_fit_a_machine_with_sixteen_gib_free():
    cfg = resolve(None, qubits=20)
    est = check_memory(cfg.backend, qubits=20, batch=cfg.batch_size, eval_batch=cfg.eval_batch_size, real=True,
                       what="train", available=16 * GiB)
    assert 4 * GiB < est.bytes < 12 * GiB


def test_classical_models_simulate_nothing():
    assert check_config(resolve(None, model="classical", qubits=40)) is None


PROBE = r"""
import json, resource, sys
import torch


def high_water() -> int:
    # This process's own peak RSS (VmHWM). Not ru_maxrss: on Linux a child's ru_maxrss starts at
    # its parent's resident size when it was spawned (the pytest process: ~1 GB once earlier tests
    # have loaded Aer and torch), which hid the step's peak (measured 0 in a full slow run).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


from torch.utils.data import TensorDataset
from hybrid_qiskit.config import resolve
from hybrid_qiskit.models import build_model
from hybrid_qiskit.resources import estimate, is_real_head
from hybrid_qiskit.runs import load_splits
from hybrid_qiskit.training import evaluate, make_backend, model_config_for

q, B, E, fm = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# method "statevector": under "auto" a 16-qubit chain head runs as a matrix-product state and
# builds no statevector, so there would be no peak to bound
cfg = resolve(None, qubits=q, batch_size=B, eval_batch_size=E, feature_map=fm, reps=1, limit_train=2 * E,
              backend_settings={"method": "statevector"})
splits = load_splits(cfg)
model = build_model(model_config_for(cfg, splits), make_backend(cfg), seed=0)
x, y = splits.train.tensors
base = high_water()
torch.nn.functional.cross_entropy(model(x[:B]), y[:B]).backward()
evaluate(model, TensorDataset(x[: 2 * E], y[: 2 * E]), E)
peak = high_water()
est = estimate("statevector", qubits=q, batch=B, eval_batch=E, real=is_real_head(fm, cfg.ansatz),
               settings=cfg.backend_settings)
print(json.dumps({"measured": peak - base, "estimate": est.bytes}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("feature_map", ["angle", "zz"])
def test_estimate_bounds_the_measured_peak_at_sixteen_qubits(feature_map):
    # One training step and two evaluation batches of 128 rows, in a fresh process: the peak RSS
    # above the process's baseline stays under the estimate, and within 1.7x of it.
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", PROBE, "16", "32", "128", feature_map], cwd=repo, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["measured"] <= figures["estimate"] <= 1.7 * figures["measured"], figures


def test_small_limits_bound_the_rows_evaluated():
    sv = {"method": "statevector"}  # the chain's memory does not grow with the rows
    big = check_config(resolve(None, qubits=16, backend_settings=sv))
    small = check_config(resolve(None, qubits=16, limit_train=16, limit_test=8, backend_settings=sv))
    assert small.bytes < big.bytes / 4  # 16 rows instead of 256 (the fixed costs stay)


def test_chain_heads_need_no_statevector():
    """From 10 qubits the statevector backend runs chain heads as a matrix-product state: a
    20-qubit head fits in 1 GiB there, and is refused when forced onto the statevector."""
    cfg = resolve(None, qubits=20)
    est = check_config(cfg)
    assert est.method == "mps_chain" and est.bytes < 512 * 2**20
    chain = head_chain(cfg)
    check_memory("statevector", qubits=20, batch=32, eval_batch=256, what="train", available=GiB, chain=chain)
    with pytest.raises(HybridQiskitError, match="batched_statevector"):
        check_memory("statevector", qubits=20, batch=32, eval_batch=256, what="train", available=GiB, chain=chain,
                     settings={"method": "statevector"})
    assert head_chain(resolve(None, qubits=20, feature_map="zz", reuploads=3)) is None  # bond 512
