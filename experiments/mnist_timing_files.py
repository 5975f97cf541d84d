"""Write MNIST-sized files in torchvision's layout, for timing `train` where MNIST cannot be had.

    python experiments/mnist_timing_files.py DIR [--train 8000] [--test 2000]
    hybrid-qiskit train --config experiments/mnist.toml --data-dir DIR

The images are scikit-learn's 8x8 digits upsampled to 20x20, padded to 28x28 as MNIST's are, and
shifted by up to 2 pixels: the size, layout and pixel statistics of MNIST, so steps cost what
MNIST's cost. Their accuracy says nothing about MNIST (1,797 distinct digits, repeated).
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as torchvision reads it: magic 0x0000_08_<ndim> (uint8), big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def digit_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    rows = rng.integers(0, len(digits.images), n)
    x = torch.from_numpy(digits.images[rows] / 16.0).float()[:, None]
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    shifts = rng.integers(-2, 3, (n, 2))
    x = torch.stack([torch.roll(img, tuple(int(s) for s in shift), dims=(1, 2)) for img, shift in zip(x, shifts)])
    x = (x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))).clamp(0, 1)
    return (x[:, 0].numpy() * 255).astype(np.uint8), digits.target[rows].astype(np.uint8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    raw = Path(args.data_dir) / "MNIST" / "raw"
    for split, n in (("train", args.train), ("t10k", args.test)):
        images, labels = digit_images(n, rng)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    print(f"wrote {args.train} train and {args.test} test images under {raw}")


if __name__ == "__main__":
    main()
