"""`hybrid-qiskit compare`: matched baselines, the paired interval, reuse of finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_qiskit.cli import main
from hybrid_qiskit.compare import baseline_config_path, pair_configs
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.stats import t_interval

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# noise_*.toml are a sweep's settings and the noise experiment's plan, not training configs.
QUANTUM_CONFIGS = sorted(p for p in EXPERIMENTS.glob("*.toml")
                         if not p.stem.endswith("-classical") and not p.stem.startswith("noise"))

TINY = """
dataset = "digits"
classes = "0,1,2,3"
model = "{model}"
qubits = 4
reps = 1
epochs = 2
limit_train = 120
limit_test = 40
batch_size = 16
lr = 0.01
seed = 3
"""


def write_pair(folder: Path, stem: str = "tiny", **extra) -> Path:
    """A tiny hybrid config and its -classical sibling; ``extra`` lines go into both."""
    more = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    (folder / f"{stem}.toml").write_text(TINY.format(model="hybrid") + more)
    (folder / f"{stem}-classical.toml").write_text(TINY.format(model="classical") + more)
    return folder / f"{stem}.toml"


@pytest.mark.parametrize("config", QUANTUM_CONFIGS, ids=lambda p: p.stem)
def test_every_experiment_has_a_matched_baseline(config):
    cfg, base, source = pair_configs(config)
    assert baseline_config_path(config) is not None, f"{config.name} has no -classical sibling"
    assert base.model in ("classical", "pixel_classical") and source.endswith("-classical.toml")
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.augment) == (base.epochs, base.lr, base.weight_decay, base.augment)


def test_t_interval_matches_the_textbook_value():
    lo, hi = t_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.3027: 2 ± 4.3027 / sqrt(3)
    assert (lo, hi) == pytest.approx((2 - 2.48420, 2 + 2.48420), abs=1e-4)
    assert t_interval([0.5]) is None


def test_compare_writes_results_and_reuses_finished_runs(tmp_path, capsys):
    config = write_pair(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--seeds", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "compare.json").read_text())
    assert result["seeds"] == [3, 4] and result["models_compared"] == ["hybrid", "classical"]
    for name in ("hybrid", "classical"):
        model = result["models"][name]
        accs = [r["test_accuracy"] for r in model["runs"]]
        assert len(accs) == 2 and model["test_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
        assert all(r["wall_seconds"] > 0 and not r["reused"] for r in model["runs"])
    diff = result["difference"]["test_accuracy"]
    assert diff["per_seed"] == pytest.approx([h["test_accuracy"] - c["test_accuracy"] for h, c in zip(
        result["models"]["hybrid"]["runs"], result["models"]["classical"]["runs"])])
    lo, hi = diff["ci95"]
    assert lo <= diff["mean"] <= hi
    table = (out / "compare.md").read_text()
    assert "| hybrid |" in table and "| classical |" in table and "95% CI" in table and "compare --config" in table
    assert table in text + "\n" and (out / "compare.png").stat().st_size > 0

    # Again: every run is reused, nothing is retrained, the numbers stay.
    stamp = (out / "hybrid-seed3" / "model.pt").stat().st_mtime_ns
    assert main(["compare", "--config", str(config), "--seeds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "compare.json").read_text())
    assert all(r["reused"] for m in again["models"].values() for r in m["runs"])
    assert again["difference"] == result["difference"]
    assert (out / "hybrid-seed3" / "model.pt").stat().st_mtime_ns == stamp

    # Another comparison into the same folder (here one seed) would replace these files: refused.
    capsys.readouterr()
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds another comparison" in err and "seeds [3, 4]" in err and "\n" not in err
    assert json.loads((out / "compare.json").read_text()) == again


def test_an_unmatched_baseline_is_one_line(tmp_path, capsys):
    config = write_pair(tmp_path)
    sibling = tmp_path / "tiny-classical.toml"
    sibling.write_text(sibling.read_text().replace("epochs = 2", "epochs = 9"))
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a matched baseline" in err and "epochs" in err and "\n" not in err


def test_bad_compare_input_is_one_line(tmp_path, capsys):
    config = write_pair(tmp_path)
    assert main(["compare", "--config", str(config), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", "--config", str(tmp_path / "tiny-classical.toml")]) == 2
    assert "quantum model" in capsys.readouterr().err
    assert main(["compare", "--config", str(config), "--set", "seed=4"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_without_a_sibling_the_baseline_is_the_same_config(tmp_path):
    (tmp_path / "solo.toml").write_text(TINY.format(model="hybrid"))
    cfg, base, source = pair_configs(tmp_path / "solo.toml")
    assert base.model == "classical" and "model = 'classical'" in source
    with pytest.raises(HybridQiskitError, match="seeds"):
        pair_configs(tmp_path / "solo.toml", {"seed": 1})


def test_a_changed_config_does_not_reuse_old_runs(tmp_path, capsys):
    config = write_pair(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out), "--set", "epochs=1"]) == 0
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (epochs differ)" in err and "--out" in err and "\n" not in err


def test_compare_reports_while_it_trains_and_counts_a_resumed_run_whole(tmp_path, capsys, monkeypatch):
    """compare was silent for about 40 s per run, and reported "trained in 6.3s" for a resumed run
    that took minutes."""
    from hybrid_qiskit import progress

    config = write_pair(tmp_path)
    out = tmp_path / "cmp"
    monkeypatch.setattr(progress, "EVERY", 0.05)
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "hybrid          seed 3: training, " in err and "epochs done" in err

    # The hybrid run, as if killed before its test metrics, after epochs that took 100 s each.
    run = out / "hybrid-seed3"
    history = json.loads((run / "history.json").read_text())
    (run / "history.json").write_text(json.dumps([{**h, "seconds": 100.0} for h in history]))
    (run / "metrics.json").unlink()
    (run / "wall.json").unlink()
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    hybrid = json.loads((out / "compare.json").read_text())["models"]["hybrid"]["runs"][0]
    assert hybrid["wall_seconds"] >= 200 and hybrid["resumed"]
    assert "over more than one session" in text
