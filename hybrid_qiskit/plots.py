"""Plots of a run: training curves, a prediction grid, a confusion matrix, noise curves.

matplotlib is imported lazily with the non-interactive Agg backend: runs happen on headless
machines and in tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy against epoch, train and val, side by side."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        ax1.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax2.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def prediction_grid(data, predictions: np.ndarray, class_names: list[str], path: str | Path, count: int = 32) -> None:
    """The first ``count`` test images with predicted and true labels (wrong ones in red)."""
    plt = _plt()
    images, labels = data.tensors
    count = min(count, len(labels))
    cols = 8
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= count:
            continue
        img = images[i].numpy()
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        img = (img - img.min()) / (np.ptp(img) or 1.0)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        p, t = int(predictions[i]), int(labels[i])
        ax.set_title(f"{class_names[p]} ({class_names[t]})", fontsize=8, color="black" if p == t else "red")
    fig.suptitle("predicted (true)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, class_names: list[str], path: str | Path) -> np.ndarray:
    """Counts of true (rows) against predicted (columns) labels; returns the matrix."""
    plt = _plt()
    k = len(class_names)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.55 * k, 1 + 0.5 * k))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if k > 2 else 0, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return matrix
