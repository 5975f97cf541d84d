"""`hybrid-qiskit compare`: matched baselines, the paired interval, reuse of finished runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from hybrid_qiskit import resources
from hybrid_qiskit.cli import main
from hybrid_qiskit.compare import baseline_config_path, command_line, compare, pair_configs
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


@pytest.fixture(scope="module")
def serial_comparison(tmp_path_factory):
    """A serial two-seed comparison, run in ``folder`` with the relative ``--out cmp`` (another
    comparison with the same flags, in another folder, records the same paths): its config, its
    folder, its compare.json as first written and what it printed. Tests may run it again there
    (every run reused: the numbers and compare.md stay)."""
    folder = tmp_path_factory.mktemp("serial")
    config = write_pair(folder)
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(folder)
        assert main(["compare", "--config", str(config), "--seeds", "2", "--out", "cmp"]) == 0
    return types.SimpleNamespace(config=config, folder=folder, printed=printed.getvalue(),
                                 result=json.loads((folder / "cmp" / "compare.json").read_text()))


def test_compare_writes_results_and_reuses_finished_runs(serial_comparison, monkeypatch, capsys):
    config, result, text = serial_comparison.config, serial_comparison.result, serial_comparison.printed
    monkeypatch.chdir(serial_comparison.folder)
    out = serial_comparison.folder / "cmp"
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
    assert main(["compare", "--config", str(config), "--seeds", "2", "--out", "cmp"]) == 0
    again = json.loads((out / "compare.json").read_text())
    assert all(r["reused"] for m in again["models"].values() for r in m["runs"])
    assert again["difference"] == result["difference"]
    assert (out / "hybrid-seed3" / "model.pt").stat().st_mtime_ns == stamp

    # Another comparison into the same folder (here one seed) would replace these files: refused.
    capsys.readouterr()
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", "cmp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds another comparison" in err and "seeds [3, 4]" in err and "\n" not in err
    assert json.loads((out / "compare.json").read_text()) == again


def test_more_seeds_reuse_the_earlier_ones_and_keep_their_files(serial_comparison, tmp_path, monkeypatch, capsys):
    # In a copy: the module's comparison stays as it is for the other tests.
    shutil.copytree(serial_comparison.folder / "cmp", tmp_path / "cmp")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cmp"
    earlier = json.loads((out / "compare.json").read_text())
    assert main(["compare", "--config", str(serial_comparison.config), "--seeds", "3", "--out", "cmp"]) == 0
    assert "kept as" in capsys.readouterr().out
    assert json.loads((out / "compare-seeds3-4.json").read_text()) == earlier
    assert (out / "compare-seeds3-4.md").exists() and (out / "compare-seeds3-4.png").exists()
    wider = json.loads((out / "compare.json").read_text())
    assert wider["seeds"] == [3, 4, 5]
    assert [r["reused"] for r in wider["models"]["hybrid"]["runs"]] == [True, True, False]


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


# ---------------------------------------------------------------- who trains: --workers, --ray
def _numbers(result: dict) -> dict:
    """compare.json less what differs between two comparisons of the same runs: the times, and
    whether a run was reused or resumed."""
    timing = {"train_seconds", "wall_seconds", "reused", "resumed"}
    models = {name: {**{k: v for k, v in m.items() if k not in timing},
                     "runs": [{k: v for k, v in r.items() if k not in timing} for r in m["runs"]]}
              for name, m in result["models"].items()}
    return {**result, "models": models}


def _table(folder: Path) -> str:
    """compare.md less its time column."""
    return re.sub(r"\| \d+\.\d s \|", "| |", (folder / "compare.md").read_text())


def test_two_workers_give_the_serial_table_and_an_interrupted_one_resumes(serial_comparison, tmp_path,
                                                                          monkeypatch, capsys):
    config, serial = serial_comparison.config, serial_comparison.result
    monkeypatch.chdir(tmp_path)  # the relative --out of the serial comparison: the workers move here too

    def interrupted(line: str) -> None:  # Ctrl-C as the first run arrives, while the other worker trains
        if "test accuracy" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(config, seeds=2, out="cmp", workers=2, echo=interrupted)
    finished = sorted(f"cmp/{p.parent.name}" for p in (tmp_path / "cmp").glob("*/metrics.json"))
    assert 1 <= len(finished) < 4 and not (tmp_path / "cmp" / "compare.json").exists()

    assert main(["compare", "--config", str(config), "--seeds", "2", "--out", "cmp", "--workers", "2"]) == 0
    assert "on 2 local worker processes" in capsys.readouterr().out
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert _numbers(result) == _numbers(serial)  # the runs' numbers, in seed order, and the paths
    assert _table(tmp_path / "cmp") == _table(serial_comparison.folder / "cmp")
    runs = [r for m in result["models"].values() for r in m["runs"]]
    assert sorted(r["run_dir"] for r in runs if r["reused"]) == finished  # nothing trained twice
    assert all(r["wall_seconds"] > 0 for r in runs)


@pytest.mark.ray
def test_ray_gives_the_serial_table(serial_comparison, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    config, serial = serial_comparison.config, serial_comparison.result
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--config", str(config), "--seeds", "2", "--out", "cmp", "--ray"]) == 0
    assert _numbers(json.loads((tmp_path / "cmp" / "compare.json").read_text())) == _numbers(serial)
    assert _table(tmp_path / "cmp") == _table(serial_comparison.folder / "cmp")


def test_bad_worker_flags_are_one_line(tmp_path, monkeypatch, capsys):
    config = write_pair(tmp_path)
    argv = ["compare", "--config", str(config), "--seeds", "2", "--out", str(tmp_path / "cmp")]

    def error(*flags: str) -> str:
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, err
        return err

    assert "--workers must be an integer >= 1, got 0" in error("--workers", "0")
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--workers", "2", "--ray"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "not allowed with argument --workers" in err and "\n" not in err
    monkeypatch.setattr(resources, "available_memory", lambda: 3 * 2**29)  # 1.5 GB free
    assert "--workers 2 needs about" in error("--workers", "2")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert "pip install 'hybrid-qiskit[cluster]'" in error("--ray")
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # installed: the address is tried first
    assert "no Ray head answers at 127.0.0.1:9" in error("--ray", "127.0.0.1:9")
    assert not list((tmp_path / "cmp").glob("*-seed*"))  # nothing trained


def test_the_recorded_command_leaves_out_who_trains():
    base = ["compare", "--config", "a b.toml", "--seeds", "5"]
    expected = "hybrid-qiskit compare --config 'a b.toml' --seeds 5"
    for flags in (["--workers", "2"], ["--workers=2"], ["--ray"], ["--ray", "10.0.0.1:6379"], ["--ray=auto"]):
        assert command_line(["compare", *flags, "--config", "a b.toml", "--seeds", "5"]) == expected
        assert command_line([*base, *flags]) == expected
