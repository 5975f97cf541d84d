"""Logs a human can read: one line per epoch in a file, train.log in the run, --quiet still reports;
threads recorded in the run; --resume on a finished run only re-reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import torch

from hybrid_qiskit.cli import main
from hybrid_qiskit.progress import Progress, RunLog
from tests.conftest import train_tiny

TINY = ["--dataset", "digits", "--classes", "0,1,2,3", "--qubits", "4", "--reps", "1", "--limit-train", "120",
        "--limit-test", "40", "--batch-size", "16", "--seed", "3"]


def test_train_piped_to_a_file_writes_one_line_per_epoch(tmp_path):
    log = tmp_path / "log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "hybrid_qiskit.cli", "train", *TINY, "--epochs", "3",
                               "--out", str(tmp_path), "--name", "piped"], stdout=fh, stderr=subprocess.STDOUT)
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = text.splitlines()
    assert "\r" not in text and len(lines) <= 20, text
    assert sum(line.startswith("epoch ") for line in lines) == 3
    assert "test accuracy" in text and "run directory" in text
    kept = (tmp_path / "piped" / "train.log").read_text()
    assert sum("  epoch " in line for line in kept.splitlines()) == 3 and "test accuracy" in kept


def test_progress_off_a_terminal_prints_plain_lines_for_slow_loops(capsys):
    with Progress(total=3, desc="evaluate test", every=30.0) as bar:  # a fast loop: silent
        for _ in range(3):
            bar.update(1)
    assert capsys.readouterr().err == ""
    # One batch longer than `every` (a 35-second evaluation of one batch printed nothing): the
    # heartbeat still reports while it runs, without carriage-return frames.
    with Progress(total=2, desc="evaluate test", every=0.05) as bar:
        bar.update(1)
        time.sleep(0.3)
        bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("evaluate test: 1/2 batches") >= 3


def test_runlog_always_lines_show_when_quiet(tmp_path, capsys):
    log = RunLog(tmp_path / "x.log", quiet=True)
    log("detail")
    log("result", always=True)
    assert capsys.readouterr().out == "result\n"
    assert (tmp_path / "x.log").read_text().count("\n") == 2


def test_threads_are_part_of_the_run_and_the_numbers_do_not_depend_on_the_machine(tmp_path, capsys):
    # The run's own thread setting applies whatever torch was set to before (a 16-core machine's
    # default), so two runs of one config give the same numbers.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = train_tiny(tmp_path, "a")  # passes --quiet
        out = capsys.readouterr().out
        torch.set_num_threads(1)
        b = train_tiny(tmp_path, "b")
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before  # train restores the caller's setting
    # --quiet still says what came out and where; the run's train.log keeps every epoch.
    assert "test accuracy" in out and f"run directory: {a}" in out and "epoch" not in out
    assert "epoch 2/2" in (a / "train.log").read_text()
    assert json.loads((a / "config.json").read_text())["threads"] == 1
    assert json.loads((a / "metrics.json").read_text())["torch_threads"] == 1
    ha, hb = (json.loads((r / "history.json").read_text()) for r in (a, b))
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_resume_on_a_finished_run_only_re_reports(tmp_path, tiny_run, capsys):
    run = tmp_path / "done"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "out": str(tmp_path), "name": "done"}))
    metrics = run / "metrics.json"
    saved = json.loads(metrics.read_text())
    saved["test_loss"] = 0.123456  # a marker: recomputing would replace it
    metrics.write_text(json.dumps(saved))
    before = metrics.read_bytes()
    capsys.readouterr()
    train_tiny(tmp_path, "done", "--resume")
    assert metrics.read_bytes() == before
    out = capsys.readouterr().out
    assert "test loss 0.1235" in out and "run directory" in out


def test_evaluate_keeps_one_result_per_setting(tmp_path, tiny_run, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    before = {p.name for p in run.glob("eval-*.json")}
    for args in (["--limit", "8"], ["--limit", "4"], ["--backend", "aer_statevector", "--shots", "64", "--limit", "4"]):
        assert main(["evaluate", str(run), *args]) == 0
    out = capsys.readouterr().out
    made = sorted({p.name for p in run.glob("eval-*.json")} - before)
    assert made == ["eval-aer_statevector-64shots-first4-test.json", "eval-statevector-first4-test.json",
                    "eval-statevector-first8-test.json"]
    assert out.count("wrote ") == 3


def test_the_training_loss_reported_is_plain_cross_entropy_under_label_smoothing():
    """history.json's train_loss reads beside val_loss: with label smoothing the model trains on
    the smoothed loss, and the epoch reports the plain one (here with a rate of 0, so the model
    stays the one the plain loss is computed with afterwards)."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from hybrid_qiskit.training import _train_epoch

    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    data = TensorDataset(torch.randn(40, 6), torch.randint(0, 3, (40,)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loss, _ = _train_epoch(model, DataLoader(data, batch_size=16), optimizer, scheduler,
                           Progress(total=3, desc="", quiet=True), label_smoothing=0.3)
    images, labels = data.tensors
    plain = nn.functional.cross_entropy(model(images), labels).item()
    smoothed = nn.functional.cross_entropy(model(images), labels, label_smoothing=0.3).item()
    assert abs(loss - plain) < 1e-6 and abs(smoothed - plain) > 0.01
