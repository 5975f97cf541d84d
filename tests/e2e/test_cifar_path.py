"""The 3-channel path end to end: a small CIFAR-10 set in torchvision's cifar-10-batches-py layout,
written here, through `train`, `evaluate` and `compare`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from hybrid_qiskit.cli import main

CONFIG = """
dataset = "cifar10"
data_dir = "{data}"
model = "{model}"
qubits = 4
reps = 1
epochs = 1
batch_size = 16
lr = 0.01
augment = true
seed = 0
"""


def write_cifar10(root: Path, per_batch: int = 20) -> None:
    """torchvision's layout: pickled dicts of uint8 rows (CHW-flattened) and labels, plus meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    rng = np.random.default_rng(0)
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        # Class-dependent colour, so that one epoch learns something.
        pixels = rng.integers(0, 128, (per_batch, 3, 32, 32)).astype(np.uint8)
        for row, label in enumerate(labels):
            pixels[row, label % 3] += np.uint8(12 * label)
        (folder / file).write_bytes(pickle.dumps({"data": pixels.reshape(per_batch, -1), "labels": labels}))


@pytest.fixture
def cifar_files(tmp_path, monkeypatch):
    # torchvision checks each batch's md5 against the real files; these stand in for them.
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    write_cifar10(tmp_path / "data")
    for model in ("hybrid", "classical"):
        stem = "cifar" if model == "hybrid" else "cifar-classical"
        (tmp_path / f"{stem}.toml").write_text(CONFIG.format(data=tmp_path / "data", model=model))
    return tmp_path


def test_cifar10_layout_through_train_evaluate_and_compare(cifar_files, capsys):
    tmp = cifar_files
    assert main(["train", "--config", str(tmp / "cifar.toml"), "--out", str(tmp / "runs"), "--name", "c", "--quiet"]) == 0
    run = tmp / "runs" / "c"
    data = json.loads((run / "data.json").read_text())
    assert (data["train"], data["val"], data["test"]) == (90, 10, 20)
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()

    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == metrics["test_accuracy"] and result["samples"] == 20

    assert main(["compare", "--config", str(tmp / "cifar.toml"), "--seeds", "2", "--out", str(tmp / "cmp")]) == 0
    compared = json.loads((tmp / "cmp" / "compare.json").read_text())
    assert set(compared["models"]) == {"hybrid", "classical"} and compared["test_samples"] == 20
    checkpoint = json.loads((tmp / "cmp" / "hybrid-seed0" / "config.json").read_text())
    assert checkpoint["dataset"] == "cifar10" and checkpoint["augment"] is True
