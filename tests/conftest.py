"""Shared fixtures: a tiny trained run that the CLI, jobs and noise tests reuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Figures render without a display (matplotlib's Agg backend), unless the environment picks one.
os.environ.setdefault("MPLBACKEND", "Agg")


def train_tiny(out: Path, name: str = "tiny", *extra: str) -> Path:
    """Train a 4-qubit hybrid model on a small 4-class digits split (a few seconds) and return its
    run dir. Four classes, so that two short epochs learn something (~75% test accuracy) and the
    tests that use the model see real predictions, not one constant class."""
    from hybrid_qiskit.cli import main

    args = ["train", "--dataset", "digits", "--classes", "0,1,2,3", "--qubits", "4", "--reps", "1", "--epochs", "2",
            "--limit-train", "160", "--limit-test", "40", "--batch-size", "16", "--lr", "0.01",
            "--seed", "3", "--out", str(out), "--name", name, "--quiet", *extra]
    assert main(args) == 0
    return out / name


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (model.pt, config.json, ...) shared by the whole session.

    Tests must not modify it; copy it (shutil.copytree) when they need to write into a run."""
    return train_tiny(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def tiny_norm_run(tmp_path_factory) -> Path:
    """The tiny run trained with post-measurement normalization (``--normalize``); read-only too."""
    return train_tiny(tmp_path_factory.mktemp("runs"), "tiny-norm", "--normalize")
