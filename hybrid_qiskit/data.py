"""Dataset registry: digits (ships with scikit-learn), mnist, fashion-mnist, cifar10 (torchvision).

Every dataset comes back as a `DataSplits` of in-memory `TensorDataset`s: images float32
`[N, C, H, W]`, already normalised, and labels int64 remapped to `0..num_classes-1`. The
datasets here are small enough (60k x 28 x 28 at most) that tensors beat per-item PIL
transforms by orders of magnitude, and a quantum head is the bottleneck anyway.

Nothing touches the network unless `download=True`; a dataset missing from disk raises
`DatasetNotFoundError` with one line that names the folder looked in and the flags to fix it.

Example::

    >>> from hybrid_qiskit import load_dataset
    >>> splits = load_dataset("digits", classes=[0, 1], seed=0)
    >>> splits.train.tensors[0].shape[1:], splits.num_classes
    (torch.Size([1, 28, 28]), 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hybrid_qiskit.errors import DatasetNotFoundError, HybridQiskitError

__all__ = [
    "DataSplits",
    "DatasetSource",
    "list_datasets",
    "load_dataset",
    "parse_classes",
    "register_dataset",
]


@dataclass(frozen=True)
class DataSplits:
    """What a model and a training loop need from a dataset, ready to wrap in DataLoaders."""

    name: str
    train: TensorDataset  # (images float32 [N,C,H,W], labels int64 [N])
    val: TensorDataset  # carved from the source's training pool; may be empty (val_fraction=0)
    test: TensorDataset  # from the source's test pool; never seen in training or model selection
    num_classes: int  # classes kept, labels are 0..num_classes-1
    in_channels: int  # 1 for the grey-scale sets, 3 for cifar10: sizes the first conv layer
    image_size: int  # H == W
    class_names: list[str]  # names of the kept classes, in label order
    test_indices: np.ndarray  # each test sample's index in the source test pool (job ledgers)

    def images(self, split: str) -> TensorDataset:
        """The ``test`` or ``val`` images, refused with one line when the split is empty."""
        data = getattr(self, split)
        if not len(data):
            hint = " (a run trained with val_fraction 0 keeps none back); use the test split" if split == "val" else ""
            raise HybridQiskitError(f"the {split} split of {self.name} has no images{hint}")
        return data


@dataclass(frozen=True)
class DatasetSource:
    """What a registered factory returns: raw pools, before class selection, splits and limits.

    Images stay raw (uint8, or digits' 0..16 grid) until the final subset is chosen, so that
    limiting CIFAR-10 to 500 samples does not first convert 50k images to float.
    """

    train_images: np.ndarray  # [N, ...] raw, in the source's own layout
    train_labels: np.ndarray  # int64 [N], the source's own class ids
    test_images: np.ndarray
    test_labels: np.ndarray
    test_indices: np.ndarray  # index of each test-pool row in the source's test pool
    class_names: list[str]  # indexed by the source's class id
    to_tensor: Callable[[np.ndarray], torch.Tensor]  # raw rows -> float32 [n, C, H, W], normalised


DatasetFactory = Callable[..., DatasetSource]
_REGISTRY: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register `fn(data_dir: Path, *, download: bool, seed: int) -> DatasetSource` as `name`.

    Registering a name again replaces the entry, so that reloading a module stays harmless.
    """

    def decorator(fn: DatasetFactory) -> DatasetFactory:
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_REGISTRY)


def parse_classes(text: str | None) -> list[int] | None:
    """Parse a `--classes` value: "0,1" -> [0, 1]; "" or None -> None (keep every class).

    Raises:
        HybridQiskitError: text that is not a comma-separated list of integers.
    """
    if text is None or not text.strip():
        return None
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise HybridQiskitError(
            f"--classes expects comma-separated class ids such as '0,1', got {text!r}"
        ) from None


def load_dataset(
    name: str,
    *,
    data_dir: str | Path = "data",
    download: bool = False,
    classes: Sequence[int] | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Load a registered dataset as normalised tensors split into train / val / test.

    Args:
        name: a name from `list_datasets()`.
        data_dir: root of torchvision's folder layout (`<data_dir>/MNIST/raw/...`); unused by digits.
        download: let torchvision fetch missing files; never implied.
        classes: source class ids to keep; labels are remapped to 0..k-1 in the order given.
        limit_train: keep this many training samples (stratified); val then holds
            `round(val_fraction * limit_train)` (at least 1), drawn from the held-out part.
        limit_test: keep this many test samples (stratified).
        val_fraction: share of the training pool held out for validation, in [0, 1).
        seed: the same seed gives identical tensors; it also fixes digits' train/test split.

    Returns:
        DataSplits; `test_indices` are sorted positions in the source's test pool (for digits,
        rows of `sklearn.datasets.load_digits()`).

    Raises:
        DatasetNotFoundError: files missing and `download` is False, or the download failed.
        HybridQiskitError: unknown name, class ids or bad limits, as one line.

    Example:
        >>> from hybrid_qiskit import load_dataset
        >>> splits = load_dataset("digits", limit_train=100, limit_test=50, seed=0)
        >>> splits.train.tensors[0].shape, len(splits.val), len(splits.test), splits.num_classes
        (torch.Size([100, 1, 28, 28]), 10, 50, 10)
    """
    if name not in _REGISTRY:
        raise HybridQiskitError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    if not 0.0 <= val_fraction < 1.0:
        raise HybridQiskitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for flag, limit in (("--limit-train", limit_train), ("--limit-test", limit_test)):
        if limit is not None and limit < 1:
            raise HybridQiskitError(f"{flag} must be a positive number of samples, got {limit}")

    source = _REGISTRY[name](Path(data_dir), download=download, seed=seed)
    kept = _check_classes(name, classes, len(source.class_names))
    # Remap in the order given: classes=[7, 1] makes 7 label 0, so logits follow the user's list.
    remap = np.full(len(source.class_names), -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))

    # One independent random stream per decision, so that changing limit_test never moves
    # the train/val split, and the same seed always picks the same samples.
    val_rng, train_rng, test_rng = (np.random.default_rng([seed, k]) for k in (1, 2, 3))

    pool = np.flatnonzero(remap[source.train_labels] >= 0)
    pool_labels = source.train_labels[pool]
    n_val = round(val_fraction * len(pool))
    val_pos = _stratified_pick(pool_labels, max(n_val, 1) if val_fraction > 0 else 0, val_rng)
    train_pos = np.setdiff1d(np.arange(len(pool)), val_pos)
    if limit_train is not None:
        train_pos = train_pos[_stratified_pick(pool_labels[train_pos], limit_train, train_rng)]
        if val_fraction > 0:
            n_val = max(round(val_fraction * limit_train), 1)
            val_pos = val_pos[_stratified_pick(pool_labels[val_pos], n_val, train_rng)]

    if len(train_pos) == 0:
        raise HybridQiskitError(f"{name}: no training samples left; lower val_fraction")

    test_pos = np.flatnonzero(remap[source.test_labels] >= 0)
    if limit_test is not None:
        test_pos = test_pos[_stratified_pick(source.test_labels[test_pos], limit_test, test_rng)]

    def tensors(images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> TensorDataset:
        x = source.to_tensor(images[rows]).contiguous()
        y = torch.from_numpy(remap[labels[rows]].astype(np.int64))
        return TensorDataset(x, y)

    train = tensors(source.train_images, source.train_labels, pool[train_pos])
    val = tensors(source.train_images, source.train_labels, pool[val_pos])
    test = tensors(source.test_images, source.test_labels, test_pos)
    _, channels, height, _ = train.tensors[0].shape
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=len(kept),
        in_channels=int(channels),
        image_size=int(height),
        class_names=[source.class_names[c] for c in kept],
        test_indices=source.test_indices[test_pos].astype(np.int64),
    )


def _check_classes(name: str, classes: Sequence[int] | None, total: int) -> list[int]:
    if classes is None:
        return list(range(total))
    kept = [int(c) for c in classes]
    bad = [c for c in kept if not 0 <= c < total]
    if bad:
        raise HybridQiskitError(
            f"{name} has classes 0..{total - 1}; got unknown class id(s) {', '.join(map(str, bad))}"
        )
    if len(set(kept)) != len(kept):
        raise HybridQiskitError(f"--classes lists a class twice: {kept}")
    if len(kept) < 2:  # a one-class "classifier" trains to zero loss and learns nothing
        raise HybridQiskitError(f"--classes needs at least two classes, got {kept}")
    return kept


def _stratified_pick(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of `n` rows whose class mix follows `labels` as closely as possible.

    Our own rather than sklearn's `train_test_split(stratify=...)`, which refuses splits smaller
    than the number of classes: exactly what `--limit-*` on a 10-class set asks for.
    """
    n = min(n, len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / max(len(labels), 1)
    take = np.floor(quota).astype(np.int64)
    # Largest remainders get the leftover slots (ties: lower class id), so the total is exactly n.
    leftover = n - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _normalizer(
    mean: Sequence[float], std: Sequence[float], scale: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return lambda x: (x.float() / scale - mean_t) / std_t


# --------------------------------------------------------------------------- digits

# Mean and std of all 1797 load_digits() images scaled to [0, 1] and upsampled to 28x28
# (computed once; a constant, so that a checkpoint's preprocessing never depends on a split).
_DIGITS_MEAN, _DIGITS_STD = 0.3053, 0.3247
_DIGITS_TEST_FRACTION = 0.2


@register_dataset("digits")
def _digits(data_dir: Path, *, download: bool, seed: int) -> DatasetSource:
    """scikit-learn's 8x8 digits upsampled to 28x28, so one LeNet-5 serves digits and MNIST."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    # No official test set: hold out a stratified, seeded 20% that plays the test pool.
    test = _stratified_pick(
        labels, round(_DIGITS_TEST_FRACTION * len(labels)), np.random.default_rng([seed, 0])
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    normalise = _normalizer([_DIGITS_MEAN], [_DIGITS_STD], scale=16.0)

    def to_tensor(rows: np.ndarray) -> torch.Tensor:
        x = normalise(torch.from_numpy(rows).unsqueeze(1))
        return F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)

    return DatasetSource(
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
        test_indices=test,
        class_names=[str(c) for c in bunch.target_names],
        to_tensor=to_tensor,
    )


# --------------------------------------------------------------------------- torchvision sets


def _open_torchvision(cls_name: str, data_dir: Path, folder: Path, download: bool, train: bool):
    """Instantiate a torchvision dataset, turning "not on disk" into one clear line."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, cls_name)
    # Folders a failed download would leave behind, empty; an empty folder later reads as
    # "incomplete or corrupted" instead of "not found".
    absent = [p for p in (folder, *folder.parents) if not p.exists() and data_dir in (p, *p.parents)]
    try:
        return cls(str(data_dir), train=train, download=download)
    except (AssertionError, ValueError, IndexError, KeyError) as exc:
        # torchvision's IDX reader asserts on a bad header (a 7-byte file), and a header that
        # promises more data than the file holds fails in frombuffer/view: damaged, not missing.
        raise _damaged(cls_name, folder, exc) from None
    except (URLError, OSError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())  # torchvision's download errors span lines
        for p in absent:  # deepest first
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        if download:
            raise DatasetNotFoundError(
                f"could not download {cls_name} into {folder}: {detail}; check the network, "
                f"or copy the files there and drop --download"
            ) from None
        if isinstance(exc, RuntimeError) and "not found" in detail.lower():
            _check_readable(cls_name, folder)
            state = "incomplete or corrupted in" if folder.is_dir() and any(folder.iterdir()) else "not found in"
            raise DatasetNotFoundError(
                f"{cls_name} {state} {folder}; pass --download to fetch it, or --data-dir "
                f"pointing at a folder with torchvision's {cls_name} layout"
            ) from None
        if isinstance(exc, RuntimeError):
            raise _damaged(cls_name, folder, exc) from None
        if isinstance(exc, OSError):
            raise HybridQiskitError(
                f"cannot read {cls_name} in {folder}: {exc.strerror or detail} ({exc.filename or folder}); "
                f"fix the permissions, or pass --data-dir pointing at a readable copy"
            ) from None
        raise


def _check_readable(cls_name: str, folder: Path) -> None:
    """torchvision reports files in a folder it may not list as "not found": say what it is."""
    for path in (folder.parent, folder):
        try:
            if path.is_dir():
                next(path.iterdir(), None)
        except PermissionError:
            raise HybridQiskitError(
                f"cannot read {cls_name} in {folder}: permission denied on {path}; fix the permissions, "
                f"or pass --data-dir pointing at a readable copy"
            ) from None


def _damaged(cls_name: str, folder: Path, exc: Exception) -> HybridQiskitError:
    detail = " ".join(str(exc).split())
    return HybridQiskitError(
        f"{cls_name} files in {folder} are damaged (truncated, or not in IDX format"
        f"{': ' + detail if detail else ''}); delete them and pass --download, or copy intact files there"
    )


def _torchvision_source(
    cls_name: str,
    folder: str,
    data_dir: Path,
    download: bool,
    mean: Sequence[float],
    std: Sequence[float],
    class_names: list[str] | None = None,
) -> DatasetSource:
    data_dir = data_dir.expanduser().resolve()
    path = data_dir / folder
    train = _open_torchvision(cls_name, data_dir, path, download, train=True)
    test = _open_torchvision(cls_name, data_dir, path, download, train=False)
    normalise = _normalizer(mean, std, scale=255.0)

    def raw(images) -> np.ndarray:  # MNIST keeps a uint8 tensor, CIFAR a uint8 ndarray
        return images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)

    def to_tensor(rows: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(rows)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # [N,H,W] / [N,H,W,C]
        return normalise(x)

    test_labels = np.asarray(test.targets, dtype=np.int64)
    return DatasetSource(
        train_images=raw(train.data),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        test_images=raw(test.data),
        test_labels=test_labels,
        test_indices=np.arange(len(test_labels)),
        class_names=class_names or list(train.classes),
        to_tensor=to_tensor,
    )


@register_dataset("mnist")
def _mnist(data_dir: Path, *, download: bool, seed: int) -> DatasetSource:
    # torchvision's MNIST.classes read "0 - zero"; plain digits match the digits dataset.
    return _torchvision_source(
        "MNIST",
        "MNIST/raw",
        data_dir,
        download,
        mean=[0.1307],
        std=[0.3081],
        class_names=[str(d) for d in range(10)],
    )


@register_dataset("fashion-mnist")
def _fashion_mnist(data_dir: Path, *, download: bool, seed: int) -> DatasetSource:
    return _torchvision_source(
        "FashionMNIST", "FashionMNIST/raw", data_dir, download, mean=[0.2860], std=[0.3530]
    )


@register_dataset("cifar10")
def _cifar10(data_dir: Path, *, download: bool, seed: int) -> DatasetSource:
    # The true per-channel std of the training set; the often-copied (0.2023, 0.1994, 0.2010)
    # is the mean of per-image stds, a different quantity.
    return _torchvision_source(
        "CIFAR10",
        "cifar-10-batches-py",
        data_dir,
        download,
        mean=[0.4914, 0.4822, 0.4465],
        std=[0.2470, 0.2435, 0.2616],
    )
