"""experiments/noise_robust.py: its config resolves to valid runs and sweeps, bad names are one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from backends import backend_spec
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.noise.grid import MITIGATIONS

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("noise_robust", ROOT / "experiments" / "noise_robust.py")
noise_robust = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noise_robust)


def test_every_model_and_variant_of_the_config_is_a_valid_run(tmp_path):
    plan = noise_robust.load_plan(ROOT / "experiments" / "noise_robust_digits.toml")
    assert plan["levels"] == [0, 1, 4, 16, 32, 48] and plan["shots"] == 1024  # the study's grid: device noise x0 to x48
    for mname, model in plan["models"].items():
        baseline = noise_robust.train_config(plan, model, model["baseline"], tmp_path, f"{mname}-classical")
        assert baseline.model in ("classical", "pixel_classical")
        for vname, variant in plan["variants"].items():
            cfg = noise_robust.train_config(plan, model, variant.get("train", {}), tmp_path, f"{mname}-{vname}")
            assert cfg.run_name() == f"{mname}-{vname}" and cfg.out == str(tmp_path)
            backend_spec(cfg.backend)  # a registered backend
            assert set(variant["mitigation"]) <= set(MITIGATIONS)
            # The baseline is matched: it differs from the plain variant only in the model.
            if vname == "plain":
                assert cfg.qubits == baseline.qubits and cfg.reps == baseline.reps and cfg.epochs == baseline.epochs


def test_unknown_model_or_variant_is_one_line_listing_the_known():
    with pytest.raises(HybridQiskitError, match="unknown variant.*known: plain, normalized"):
        noise_robust._pick("plain,bogus", {"plain": {}, "normalized": {}}, "variant")


def test_markdown_table_has_a_row_per_series_and_the_baseline():
    levels = {"0": {"accuracy": 0.98}, "32": {"accuracy": 0.5}}
    results = {"plan": {"levels": [0, 32]}, "models": {"hybrid": {"classical": 0.96, "variants": {
        "plain, none": {"exact": 0.98, "levels": levels, "train_seconds": 17.0, "sweep_seconds": 30.0}}}}}
    table = noise_robust.markdown(results).splitlines()
    assert table[2] == "| hybrid | plain, none | 0.980 | 0.980 | 0.500 | 17 | 30 |"
    assert table[3].startswith("| hybrid | classical baseline | 0.960 |")


def test_noise_ceiling_fits_readouts_to_the_whole_training_split(tiny_run, tmp_path, capsys):
    """experiments/noise_ceiling.py on the tiny run: exact and a noisy scale, readouts fitted to
    every training image's ⟨Z⟩ and scored on the test split, written beside the run's sweeps."""
    import json
    import shutil

    spec = importlib.util.spec_from_file_location("noise_ceiling", ROOT / "experiments" / "noise_ceiling.py")
    ceiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ceiling)
    run = shutil.copytree(tiny_run, tmp_path / "run")
    assert ceiling.main([str(run), "--levels", "0,64", "--shots", "256"]) == 0
    rows = json.loads((run / "noise" / "ceiling-fake_fez-256.json").read_text())["rows"]
    exact, noisy = rows
    assert exact["train_images"] == 160 and exact["test_images"] == 40
    assert exact["logistic"] > 0.5 and exact["own_readout"] > 0.5  # 4 classes: well above chance
    assert max(noisy["qubit_spread"]) < max(exact["qubit_spread"])  # the noise shrank the signal
    assert ceiling.main([str(run), "--levels", "0,-1"]) == 2
    assert "--levels must be non-negative" in capsys.readouterr().err
