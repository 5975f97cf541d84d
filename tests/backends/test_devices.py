"""Fake-device lookup by name."""

from __future__ import annotations

import pytest

from backends.devices import (
    describe_device,
    fake_device_names,
    get_fake_backend,
    list_fake_devices,
    normalize_device_name,
)
from hybrid_qiskit.errors import HybridQiskitError


def test_list_has_common_devices_sorted_with_sizes():
    names = fake_device_names()
    assert {"fake_manila", "fake_brisbane", "fake_torino"} <= set(names)
    assert names == sorted(names)
    devices = list_fake_devices()
    assert [d["name"] for d in devices] == names
    sizes = {d["name"]: d["num_qubits"] for d in devices}
    assert sizes["fake_manila"] == 5 and sizes["fake_brisbane"] == 127


@pytest.mark.parametrize("spelling", ["fake_manila", "FakeManilaV2", "manila", "fake-manila"])
def test_spellings_resolve(spelling):
    assert normalize_device_name(spelling) == "fake_manila"
    assert get_fake_backend(spelling).name == "fake_manila"


def test_fresh_instance_each_time():
    assert get_fake_backend("fake_manila") is not get_fake_backend("fake_manila")


def test_unknown_device_lists_known_names():
    with pytest.raises(HybridQiskitError, match="unknown fake device 'fake_manilla'.*fake_manila"):
        get_fake_backend("fake_manilla")
    with pytest.raises(HybridQiskitError, match="e.g. fake_manila, fake_lima"):
        get_fake_backend("nothing_like_it")


def test_describe_device():
    info = describe_device(get_fake_backend("fake_manila"))
    assert info["name"] == "fake_manila" and info["num_qubits"] == 5
    assert info["two_qubit_gates"] == ["cx"]
    assert {"rz", "sx", "x", "cx"} <= set(info["basis_gates"])
    assert "measure" not in info["basis_gates"]
