"""Dataset registry: digits offline, MNIST-style sets from IDX files written here, error lines."""

from __future__ import annotations

import pickle
import struct
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from hybrid_qiskit import data
from hybrid_qiskit.augment import augment_batch
from hybrid_qiskit.data import DatasetSource, list_datasets, load_dataset, parse_classes
from hybrid_qiskit.errors import DatasetNotFoundError, HybridQiskitError

# torchvision's folder and class name for each MNIST-style entry of the registry.
MNIST_LIKE = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
N_TRAIN, N_TEST = 200, 50


def _rows(dataset: torch.utils.data.TensorDataset) -> set[bytes]:
    return {row.numpy().tobytes() for row in dataset.tensors[0]}


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as torchvision reads it: magic 0x0000_08_<ndim> (uint8), big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, folder: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST) * 3) % 10,
    }
    for name, array in arrays.items():
        _write_idx(root / folder / "raw" / name, array)
    return arrays


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_registry_lists_every_dataset():
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "mnist"]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(HybridQiskitError, match="known: cifar10, digits"):
        load_dataset("imagenet")


def test_register_dataset_adds_a_factory(monkeypatch):
    monkeypatch.setattr(data, "_REGISTRY", dict(data._REGISTRY))
    labels = np.arange(40) % 2

    @data.register_dataset("toy")
    def _toy(data_dir, *, download, seed):
        images = np.arange(40 * 4, dtype=np.float32).reshape(40, 1, 2, 2)
        return DatasetSource(
            images, labels, images, labels, np.arange(40), ["a", "b"], to_tensor=torch.from_numpy
        )

    assert "toy" in list_datasets()
    splits = load_dataset("toy", val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 40)
    assert (splits.in_channels, splits.image_size, splits.class_names) == (1, 2, ["a", "b"])


def test_digits_shapes_dtypes_and_sizes(digits):
    assert (digits.name, digits.num_classes, digits.in_channels, digits.image_size) == (
        "digits",
        10,
        1,
        28,
    )
    assert digits.class_names == [str(d) for d in range(10)]
    for split in (digits.train, digits.val, digits.test):
        x, y = split.tensors
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and int(y.min()) == 0 and int(y.max()) == 9
    # 1797 images: 20% test (359), then 10% of the remaining 1438 as val (144).
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1294, 144, 359)
    assert digits.test_indices.dtype == np.int64 and len(digits.test_indices) == 359
    # Normalised with constants computed over the whole set, so the train split is near 0/1.
    x = digits.train.tensors[0]
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_digits_splits_are_disjoint_and_stratified(digits):
    train, val, test = _rows(digits.train), _rows(digits.val), _rows(digits.test)
    assert len(train) + len(val) + len(test) == 1797
    assert not (train & val or train & test or val & test)
    for split in (digits.train, digits.val, digits.test):
        counts = Counter(split.tensors[1].tolist())
        share = len(split) / 10
        assert all(abs(counts[c] - share) <= 0.1 * share + 1 for c in range(10)), counts


def test_digits_test_indices_point_at_the_source_rows(digits):
    source = load_digits()
    assert torch.equal(digits.test.tensors[1], torch.from_numpy(source.target[digits.test_indices]))
    assert np.all(np.diff(digits.test_indices) > 0)  # sorted: easy to diff between ledgers


def test_digits_is_deterministic_per_seed(digits):
    again = load_dataset("digits", seed=0)
    for a, b in zip(
        (digits.train, digits.val, digits.test), (again.train, again.val, again.test), strict=True
    ):
        assert all(torch.equal(u, v) for u, v in zip(a.tensors, b.tensors, strict=True))
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(digits.test_indices, other.test_indices)
    assert _rows(digits.val) != _rows(other.val)


def test_classes_keep_a_subset_and_remap_in_the_given_order():
    splits = load_dataset("digits", classes=[7, 1])
    assert (splits.num_classes, splits.class_names) == (2, ["7", "1"])
    for split in (splits.train, splits.val, splits.test):
        assert set(split.tensors[1].tolist()) == {0, 1}
    source = load_digits().target[splits.test_indices]
    assert np.array_equal(np.where(source == 7, 0, 1), splits.test.tensors[1].numpy())
    assert set(source) == {1, 7}


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        ([0, 10], r"classes 0\.\.9; got unknown class id\(s\) 10"),
        ([-1, 2], "unknown class"),
        ([3, 3], "twice"),
        ([4], "at least two"),
    ],
)
def test_bad_classes_are_one_clear_line(classes, match):
    with pytest.raises(HybridQiskitError, match=match) as info:
        load_dataset("digits", classes=classes)
    assert "\n" not in str(info.value)


def test_limits_subsample_stratified_and_deterministic():
    splits = load_dataset("digits", limit_train=50, limit_test=20, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 5, 20)
    assert Counter(splits.train.tensors[1].tolist()) == dict.fromkeys(range(10), 5)
    assert Counter(splits.test.tensors[1].tolist()) == dict.fromkeys(range(10), 2)
    again = load_dataset("digits", limit_train=50, limit_test=20, seed=3)
    assert torch.equal(splits.train.tensors[0], again.train.tensors[0])
    assert np.array_equal(splits.test_indices, again.test_indices)
    # The test limit draws from its own random stream: the train subset does not move.
    other_test = load_dataset("digits", limit_train=50, limit_test=30, seed=3)
    assert torch.equal(splits.train.tensors[0], other_test.train.tensors[0])
    # Limits above the pool keep everything; limits below the class count still work.
    assert len(load_dataset("digits", limit_test=10_000).test) == 359
    tiny = load_dataset("digits", classes=[0, 1], limit_train=3, limit_test=1)
    assert (len(tiny.train), len(tiny.val), len(tiny.test)) == (3, 1, 1)


def test_val_fraction_zero_gives_an_empty_val_split():
    splits = load_dataset("digits", val_fraction=0.0)
    assert len(splits.val) == 0 and splits.val.tensors[0].shape[1:] == (1, 28, 28)
    assert len(splits.train) == 1438


@pytest.mark.parametrize("kwargs", [{"val_fraction": 1.0}, {"limit_train": 0}, {"limit_test": -1}])
def test_bad_sizes_are_rejected(kwargs):
    with pytest.raises(HybridQiskitError):
        load_dataset("digits", **kwargs)


@pytest.mark.parametrize("name", sorted(MNIST_LIKE))
def test_mnist_like_loads_offline_from_raw_idx_files(tmp_path, name):
    # torchvision 0.29's MNIST._check_exists only checks that the uncompressed raw files
    # exist (check_integrity without an md5), so hand-written IDX files are accepted.
    arrays = _write_mnist_like(tmp_path, MNIST_LIKE[name])
    splits = load_dataset(name, data_dir=tmp_path, seed=1)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 28)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (180, 20, N_TEST)
    assert splits.train.tensors[0].dtype == torch.float32
    assert splits.train.tensors[0].shape[1:] == (1, 28, 28)
    assert np.array_equal(splits.test_indices, np.arange(N_TEST))
    mean, std = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}[name]
    expected = (torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255 - mean) / std
    assert torch.allclose(splits.test.tensors[0][:, 0], expected)
    assert torch.equal(
        splits.test.tensors[1], torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    )
    assert Counter(splits.val.tensors[1].tolist()) == dict.fromkeys(range(10), 2)
    assert not _rows(splits.train) & _rows(splits.val)
    if name == "fashion-mnist":
        assert splits.class_names[0] == "T-shirt/top"

    subset = load_dataset(name, data_dir=tmp_path, classes=[3, 5], limit_test=4)
    assert subset.class_names[1] == ("5" if name == "mnist" else "Sandal")
    assert len(subset.test) == 4 and set(arrays["t10k-labels-idx1-ubyte"][subset.test_indices]) == {
        3,
        5,
    }


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
    ],
)
def test_missing_files_name_the_folder_and_the_flag(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message
    assert str((tmp_path / "nowhere" / folder).resolve()) in message
    assert "not found in" in message and "--download" in message and "--data-dir" in message


def test_partial_files_say_incomplete(tmp_path):
    _write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(DatasetNotFoundError, match="incomplete or corrupted in .*MNIST/raw"):
        load_dataset("mnist", data_dir=tmp_path)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://x, got:\n"
            + str(URLError("no network"))
        )

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="could not download MNIST into") as info:
        load_dataset("mnist", data_dir=tmp_path, download=True)
    assert "\n" not in str(info.value) and "no network" in str(info.value)


def test_cifar10_converts_hwc_batches(tmp_path, monkeypatch):
    # CIFAR10 checks the md5 of every batch; skip that check so that small batches written
    # here stand in for the real ones, and the HWC -> CHW conversion and normalisation are tested.
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    batches = {}
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (20, 3 * 32 * 32), dtype=np.uint8)  # rows are CHW-flattened
        batches[file] = pixels
        (root / file).write_bytes(pickle.dumps({"data": pixels, "labels": list(range(10)) * 2}))

    splits = load_dataset("cifar10", data_dir=tmp_path, classes=[3, 5])
    assert (splits.in_channels, splits.image_size, splits.class_names) == (3, 32, ["cat", "dog"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)
    x = splits.test.tensors[0]
    assert x.shape == (4, 3, 32, 32) and x.is_contiguous()
    raw = torch.from_numpy(batches["test_batch"][splits.test_indices]).view(4, 3, 32, 32).float()
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw / 255 - mean) / std)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0,1", [0, 1]), (" 3, 8 ", [3, 8]), ("", None), ("  ", None), (None, None)],
)
def test_parse_classes(text, expected):
    assert parse_classes(text) == expected


@pytest.mark.parametrize("text", ["a,b", "0,,1", "1.5"])
def test_parse_classes_rejects_bad_text(text):
    with pytest.raises(HybridQiskitError, match="--classes expects") as info:
        parse_classes(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["seven_bytes", "header_larger_than_data", "junk", "empty"])
def test_damaged_idx_files_are_one_line_naming_the_folder(tmp_path, damage):
    # torchvision's reader asserts on a short header and fails in view() when the header promises
    # more data than the file holds: both are "damaged files", with the way out, never a traceback.
    _write_mnist_like(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    good = path.read_bytes()
    path.write_bytes({"seven_bytes": good[:7], "header_larger_than_data": good[:1000],
                      "junk": b"\xff" * 64, "empty": b""}[damage])
    with pytest.raises(HybridQiskitError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "damaged" in message and "MNIST/raw" in message and "--download" in message


def test_unreadable_idx_file_is_one_line(tmp_path, monkeypatch):
    # Permissions at the OS boundary (this also runs as root, which ignores mode bits): the read
    # of one IDX file fails with EACCES; the real-permission case runs in tests/e2e/test_attacks.py.
    import builtins

    _write_mnist_like(tmp_path, "MNIST")
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file).endswith("train-images-idx3-ubyte"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(HybridQiskitError, match="cannot read MNIST in .*Permission denied") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_a_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    # torchvision makes MNIST/raw before it downloads; offline, that empty folder used to make the
    # next run say "incomplete or corrupted" instead of "not found".
    import torchvision.datasets

    def offline(self):
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: " + str(URLError("no network")))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="could not download"):
        load_dataset("mnist", data_dir=tmp_path / "data", download=True)
    assert not (tmp_path / "data" / "MNIST").exists()
    with pytest.raises(DatasetNotFoundError, match="not found in"):
        load_dataset("mnist", data_dir=tmp_path / "data")


def test_augment_batch_shifts_and_rotates_each_image_differently():
    torch.manual_seed(0)
    images = torch.zeros(8, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0
    out = augment_batch(images)
    assert out.shape == images.shape and not torch.equal(out, images)
    assert len({row.numpy().tobytes() for row in out}) == 8  # one draw per image
    assert out.min() >= 0 and out.max() <= 1  # bilinear, border-filled: no new values
    torch.manual_seed(0)
    assert torch.equal(augment_batch(images), out)  # the seed fixes the draws
    rgb = augment_batch(torch.rand(4, 3, 32, 32), flip=True)
    assert rgb.shape == (4, 3, 32, 32)


def test_augment_flips_and_erases_only_when_asked():
    images = torch.rand(64, 1, 28, 28) + 0.5  # no zeros: an erased pixel is one
    torch.manual_seed(1)
    plain = augment_batch(images, shift=0, degrees=0)
    assert torch.allclose(plain, images, atol=1e-5)  # the identity transform
    torch.manual_seed(1)
    flipped = augment_batch(images, shift=0, degrees=0, flip=True)
    mirrored = [torch.allclose(f, x.flip(-1), atol=1e-5) for f, x in zip(flipped, images)]
    assert 16 < sum(mirrored) < 48  # about half, each either mirrored or not
    assert all(m or torch.allclose(f, x, atol=1e-5) for m, f, x in zip(mirrored, flipped, images))
    torch.manual_seed(1)
    erased = augment_batch(images, shift=0, degrees=0, erase=0.5)
    zeros = (erased == 0).flatten(1).sum(1)
    assert 16 < int((zeros > 0).sum()) < 48
    for z, e in zip(zeros, erased):  # one rectangle of 2-33% of the image, the rest untouched
        if z:
            rows, cols = (e[0] == 0).nonzero(as_tuple=True)
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box == z and 0.01 * 784 <= z <= 0.34 * 784
    torch.manual_seed(1)
    augment_batch(images, erase=0.0)
    after_off = torch.rand(1)
    torch.manual_seed(1)
    augment_batch(images)
    assert torch.equal(torch.rand(1), after_off)  # off draws nothing: older runs replay exactly
