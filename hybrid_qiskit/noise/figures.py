"""The sweep's figures: accuracy and mean |⟨Z⟩| against the noise axis, and against shots.

``accuracy_vs_noise.png`` puts the first grid axis that varies (level, else device, else
mitigation) on x; ``accuracy_vs_shots.png`` is drawn only when the sweep has two or more shot
counts (one count is one point per line: nothing to read off). Reference lines (exact
simulation, classical baseline) carry their value at the right edge, moved apart when lines
nearly coincide; the legend sits under the panels. Hints about flags belong on the terminal and
in summary.json, not inside a figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from hybrid_qiskit.noise.grid import GROUP_FIELDS, shot_axis

NOISE_PNG, SHOTS_PNG = "accuracy_vs_noise.png", "accuracy_vs_shots.png"
MIN_LABEL_GAP = 0.05  # accuracy units between two reference labels


def sweep_figures(out_dir: Path, cfg, rows: list[dict], kind, title: str) -> list[str]:
    """Draw the sweep's figures into ``out_dir``; returns the file names written."""
    grid = [r for r in rows if r["noise"] == cfg.noise]
    several = len({r["model"] for r in rows}) > 1
    references = [{"label": "exact simulation" + (f" ({r['model']})" if several else ""),
                   "accuracy": r["accuracy_mean"], "kind": "exact"} for r in rows if r["noise"] == "exact"]
    references += [{"label": f"classical baseline ({r['model']})", "accuracy": r["accuracy_mean"],
                    "kind": "baseline"} for r in rows if r["noise"] == "classical"]
    vary = {f: len({r[f] for r in grid}) > 1 for f in GROUP_FIELDS}
    names = {"level": kind.level_name}
    axes = {"level": (list(cfg.levels), kind.level_meaning),
            "device": (list(cfg.devices), "device (calibrated noise)" if cfg.noise == "device"
                       else "device (coupling map and basis gates)"),
            "mitigation": (list(cfg.mitigation), "error mitigation")}
    x_key = next((k for k in axes if vary[k]), "level")
    series = [f for f in ("model", "device", "shots", "mitigation", "level") if vary[f] and f != x_key]
    draw(grid, out_dir / NOISE_PNG, x_key=x_key, x_values=axes[x_key][0], x_label=axes[x_key][1],
         series_keys=series, references=references, title=title, names=names)
    written = [NOISE_PNG]
    if len(cfg.shots) > 1:
        series = [f for f in ("model", "device", "level", "mitigation") if vary[f] or f == "level"]
        draw(grid, out_dir / SHOTS_PNG, x_key="shots", x_values=shot_axis(cfg),
             x_label="shots per circuit (exact: density-matrix expectation)", series_keys=series,
             references=references, title=title, names=names)
        written.append(SHOTS_PNG)
    else:
        (out_dir / SHOTS_PNG).unlink(missing_ok=True)  # an earlier sweep's, under the same --name
    return written


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(rows: list[dict], path: str | Path, *, x_key: str, x_values: list[str], x_label: str,
         series_keys: list[str], references: list[dict], title: str = "",
         names: dict[str, str] | None = None) -> None:
    """Accuracy (left) and mean |⟨Z⟩| (right) against one grid axis, one line per series.

    Args:
        rows: aggregated sweep rows (``accuracy_mean``/``_std``, ``mean_abs_z_mean``/``_std`` and
            the grid fields); error bars are the standard deviation over repeats.
        x_key: the row field on the x axis; its values are placed evenly, in ``x_values`` order.
        series_keys: the row fields that tell one line from another (shown in the legend).
        references: horizontal lines on the accuracy panel, each ``{"label", "accuracy",
            "kind": "exact" | "baseline"}``.
        names: legend names of row fields (e.g. ``{"level": "p"}``).
    """
    plt = _plt()
    position = {x: i for i, x in enumerate(x_values)}
    series: dict[tuple, list[dict]] = {}
    for row in rows:
        if row[x_key] in position:
            series.setdefault(tuple(row[k] for k in series_keys), []).append(row)
    entries = len(series) + len(references)
    ncol = min(max(entries, 1), 3)
    legend_rows = math.ceil(entries / ncol)
    height = 4.2 + 0.22 * legend_rows
    fig, (ax_acc, ax_z) = plt.subplots(1, 2, figsize=(11, height))
    colors = plt.get_cmap("tab10").colors
    models = list(dict.fromkeys(k[series_keys.index("model")] for k in series)) if "model" in series_keys else []
    step = min(0.06, 0.25 / max(len(series), 1))  # dodge overlapping error bars
    categorical = x_key in ("device", "mitigation")  # no line between unrelated x values
    for i, (key, members) in enumerate(series.items()):
        members = sorted(members, key=lambda r: position[r[x_key]])
        xs = [position[r[x_key]] + step * (i - (len(series) - 1) / 2) for r in members]
        fields = dict(zip(series_keys, key))
        label = ", ".join(f"{(names or {}).get(k, k)}={v}" for k, v in fields.items()) or None
        style = {"marker": "osD^v"[models.index(fields["model"]) % 5] if models else "o", "capsize": 3,
                 "color": colors[i % len(colors)],
                 "linestyle": "none" if categorical else "--" if fields.get("mitigation", "none") != "none" else "-"}
        ax_acc.errorbar(xs, [r["accuracy_mean"] for r in members], [r["accuracy_std"] for r in members],
                        label=label, **style)
        ax_z.errorbar(xs, [r["mean_abs_z_mean"] for r in members], [r["mean_abs_z_std"] for r in members],
                      label=label, **style)
    _reference_lines(ax_acc, references)
    for ax, ylabel in ((ax_acc, "accuracy"), (ax_z, "mean |⟨Z⟩|")):
        ax.set_xticks(range(len(x_values)), x_values)
        ax.set_xlim(-0.5, len(x_values) - 0.5)  # one value: a centred point, not a stretched axis
        ax.set(xlabel=x_label, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.05)
    if title:
        fig.suptitle(title, fontsize=11)
    handles, labels = ax_acc.get_legend_handles_labels()
    bottom = (0.12 + 0.22 * legend_rows) / height
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _reference_lines(ax, references: list[dict]) -> None:
    """Horizontal reference lines, each with its value at the right edge in its own colour; labels
    of nearly coincident lines are moved apart so that both stay readable."""
    exact_styles = iter([("0.25", "--"), ("tab:blue", "-."), ("0.55", (0, (5, 1))), ("tab:purple", (0, (3, 1, 1, 1)))] * 4)
    placed = []
    for ref in references:
        color, dash = next(exact_styles) if ref["kind"] == "exact" else ("tab:red", ":")
        ax.axhline(ref["accuracy"], color=color, linestyle=dash, linewidth=1.6,
                   label=f"{ref['label']}: {ref['accuracy']:.3f}")
        placed.append([ref["accuracy"], ref, color])
    placed.sort(key=lambda p: p[0])
    for i in range(1, len(placed)):  # push labels up until they are apart...
        placed[i][0] = max(placed[i][0], placed[i - 1][0] + MIN_LABEL_GAP)
    overflow = placed[-1][0] - 0.96 if placed else 0
    if overflow > 0:  # ...and the whole stack down if it left the axes
        for p in placed:
            p[0] -= overflow
    for y, ref, color in placed:
        text = {"fontsize": 8, "color": color, "fontweight": "bold", "ha": "right", "va": "center",
                "bbox": {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": color, "linewidth": 0.6}}
        # Above its line near the right edge; a moved label keeps a leader to its own line.
        ax.annotate(f"{ref['accuracy']:.3f}", xy=(0.995, ref["accuracy"]), xycoords=("axes fraction", "data"),
                    xytext=(0.97, y + 0.035), textcoords=("axes fraction", "data"),
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.8}, **text)
