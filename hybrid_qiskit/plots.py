"""Plots of a run: training curves, a prediction grid, a confusion matrix, noise curves.

matplotlib is imported lazily with the non-interactive Agg backend: runs happen on headless
machines and in tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybrid_qiskit.stats import t_interval


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
        if any(h[f"{split}_loss"] is None for h in history):  # val_fraction 0: no validation images
            continue
        ax1.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax2.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
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


def comparison(result: dict, path: str | Path) -> None:
    """``compare``'s figure: test accuracy per seed for both models (a grey line joins each pair;
    the bar is the mean with its 95% t-interval), and the paired differences with theirs."""
    plt = _plt()
    first, second = result["models_compared"]
    seeds = result["seeds"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    acc = {m: [r["test_accuracy"] for r in result["models"][m]["runs"]] for m in (first, second)}
    for a, b in zip(acc[first], acc[second]):
        ax1.plot([0, 1], [a, b], color="0.75", linewidth=1, zorder=1)
    for x, (m, color) in enumerate(((first, "tab:blue"), (second, "tab:orange"))):
        ax1.scatter([x] * len(acc[m]), acc[m], color=color, zorder=2, s=25)
        mean, ci = _mean_ci(acc[m])
        ax1.errorbar([x + 0.12], [mean], yerr=ci, fmt="D", color=color, capsize=5, zorder=3)
        ax1.annotate(f"{mean:.3f}", (x + 0.18, mean), va="center", fontsize=9)
    ax1.set_xticks([0, 1], [first, second])
    ax1.set_xlim(-0.4, 1.6)
    ax1.set(ylabel="test accuracy", title=f"Test accuracy, seeds {seeds[0]}-{seeds[-1]} (mean, 95% CI)")
    d = result["difference"]["test_accuracy"]
    ax2.axhline(0, color="black", linewidth=0.8)
    ax2.scatter(range(len(seeds)), d["per_seed"], color="tab:green", zorder=2, label="per seed")
    if d["ci95"]:
        lo, hi = d["ci95"]
        ax2.axhspan(lo, hi, color="tab:green", alpha=0.15, label=f"95% CI [{lo:+.3f}, {hi:+.3f}]")
    ax2.axhline(d["mean"], color="tab:green", linestyle="--", label=f"mean {d['mean']:+.3f}")
    ax2.set_xticks(range(len(seeds)), [str(s) for s in seeds])
    ax2.set(xlabel="seed", ylabel=f"{first} − {second}", title="Paired difference in test accuracy")
    ax2.legend(fontsize=8, loc="best")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value)."""
    mean = sum(values) / len(values)
    ci = t_interval(values)
    return mean, (ci[1] - mean) if ci else 0.0
