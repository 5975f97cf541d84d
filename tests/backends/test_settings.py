"""Typed backend settings (backends/settings.py): every registered backend has a model, and what
create_backend is given is checked against it in one line before a factory runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends import backend_spec, create_backend, list_backends
from backends.settings import BackendSettings, NoiseSettings
from hybrid_qiskit.errors import HybridQiskitError

NOISY = ["aer_noisy", "aer_noisy_exact", "noisy_trajectories"]


@pytest.mark.parametrize("name", list_backends())
def test_every_backend_has_a_model_with_a_description_per_setting(name):
    spec = backend_spec(name)
    assert spec.settings_model is not BackendSettings
    described = spec.describe_settings()
    assert list(described) == list(spec.settings)
    for setting, info in described.items():
        assert info["description"], f"{name}.{setting} has no description"
        assert info["type"] and info["allowed"]
        assert info["default"] == spec.settings[setting]


@pytest.mark.parametrize("name", NOISY)
def test_the_noisy_simulators_share_the_noise_settings(name):
    assert issubclass(backend_spec(name).settings_model, NoiseSettings)
    assert set(NoiseSettings.model_fields) <= set(backend_spec(name).settings)


@pytest.mark.parametrize("value", ["no", "false", 1, 0])
def test_a_boolean_is_true_or_false(value):
    with pytest.raises(HybridQiskitError, match=f"single_precision must be true or false, got {value!r}$"):
        create_backend("statevector", single_precision=value)


@pytest.mark.parametrize("name", NOISY)
def test_a_negative_noise_scale_names_the_setting_the_value_and_the_range(name):
    with pytest.raises(HybridQiskitError) as err:
        create_backend(name, noise_scale=-0.5)
    assert str(err.value) == "noise_scale = -0.5 is not allowed: must be a finite number >= 0"


@pytest.mark.parametrize("setting,value,words", [
    ("shots", 0, "shots = 0 is not allowed: must be an integer >= 1"),
    ("shots", 2.5, "shots must be an integer, got 2.5"),
    ("shots", "100", "shots must be an integer, got '100'"),
    ("depolarizing", 1.5, "depolarizing = 1.5 is not allowed: must be a finite number >= 0 and <= 1 (or unset)"),
    ("depolarizing", "abc", "depolarizing must be a number, got 'abc'"),
    ("t1", -1.0, "t1 = -1.0 is not allowed: must be a finite number > 0"),
    ("optimization_level", 4, "optimization_level = 4 is not allowed: must be an integer in 0..3"),
    ("trajectories", True, "trajectories must be an integer, got True"),
])
def test_a_bad_value_is_one_line(setting, value, words):
    with pytest.raises(HybridQiskitError) as err:
        create_backend("noisy_trajectories", **{setting: value})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_setting_lists_the_valid_ones():
    with pytest.raises(HybridQiskitError) as err:
        create_backend("aer_noisy_exact", shots=100)
    assert str(err.value) == (
        "backend 'aer_noisy_exact' does not take setting(s) shots; it takes: "
        + ", ".join(sorted(NoiseSettings.model_fields)))


def test_numpy_numbers_are_numbers():
    handle = create_backend("aer_noisy", device="all_to_all", noise_scale=np.float64(0.5), shots=np.int64(64))
    assert handle.description["shots"] == 64 and type(handle.description["shots"]) is int


def test_backends_json_shows_each_settings_type_default_and_description(capsys):
    from hybrid_qiskit.cli import main

    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    scale = rows["aer_noisy"]["settings"]["noise_scale"]
    assert scale["type"] == "number" and scale["default"] == 1.0
    assert scale["allowed"] == "a finite number >= 0" and "error rate" in scale["description"]
    single = rows["statevector"]["settings"]["single_precision"]
    assert single["type"] == "boolean" and single["default"] is False and "float32" in single["description"]
    assert rows["aer_statevector"]["settings"]["shots"]["type"] == "integer | null"


def test_the_text_listing_shows_the_defaults(capsys):
    from hybrid_qiskit.cli import main

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "settings: seed=None, single_precision=False, method='auto'" in out
    assert "settings: shots=1024, method='auto', device='fake_fez', noise_scale=1.0," in out
