"""hybrid_qiskit.evaluation (what `evaluate` does, without the CLI) and the one normalization
policy that evaluate, submit and sweep cells share."""

from __future__ import annotations

import json
import shutil

import pytest

from hybrid_qiskit.adaptation import normalization_policy
from hybrid_qiskit.cli import main
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.evaluation import evaluate_run


def test_evaluate_run_is_what_the_command_saves(tiny_norm_run, tmp_path, capsys):
    run = shutil.copytree(tiny_norm_run, tmp_path / "run")
    ev = evaluate_run(run, backend="aer_noisy", settings={"shots": 256, "device": None}, limit=10)
    assert ev.unwritable is None and not ev.replaced
    assert ev.path.name == "eval-aer_noisy-fake_fez-256shots-first10-normcalibration-test.json"
    assert ev.result["normalization"]["stats"] == "calibration" and ev.result["samples"] == 10
    assert json.loads(ev.path.read_text())["accuracy"] == ev.result["accuracy"]
    # The command writes the same file from the same settings, and says it replaced it.
    assert main(["evaluate", str(run), "--backend", "aer_noisy", "--shots", "256", "--limit", "10"]) == 0
    assert "(replacing an evaluation with the same settings)" in capsys.readouterr().out
    assert json.loads(ev.path.read_text())["accuracy"] == ev.result["accuracy"]


@pytest.mark.parametrize("args,expected", [
    (dict(stats=None, layer=True, other_backend=True), "calibration"),  # the layer, on another backend
    (dict(stats=None, layer=True, other_backend=False), "off"),  # its own: the trained statistics
    (dict(stats=None, layer=False, other_backend=True), "off"),  # no layer: normalizing is asked for
    (dict(stats="batch", layer=False, other_backend=True), "batch"),
    (dict(stats=None, refit=True, layer=False, other_backend=True), "calibration"),
    (dict(stats="calibration", layer=False, other_backend=False, quantum=False, refit=False), None),
])
def test_the_policy(args, expected):
    if expected is None:  # a classical model asked to normalize
        with pytest.raises(HybridQiskitError, match="a classical model has no ⟨Z⟩"):
            normalization_policy(**args)
        return
    assert normalization_policy(**args) == expected


def test_one_wording_for_a_refit_from_another_source(tiny_run, capsys):
    """evaluate, submit and the adaptation itself refused a re-fit from batch statistics in three
    wordings; now one."""
    with pytest.raises(HybridQiskitError) as policy:
        normalization_policy("batch", refit=True, layer=False, other_backend=True)
    for argv in (["evaluate", str(tiny_run), "--backend", "aer_noisy", "--normalize-stats", "batch",
                  "--refit-readout"],
                 ["submit", str(tiny_run), "--backend", "ibm_local", "--device", "fake_manila", "--samples", "2",
                  "--normalize-stats", "batch", "--refit-readout", "--dry-run"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"error: {policy.value}"
