"""Report a finished sweep: per-setting aggregates, CSV / Markdown / JSON tables, and the plots.

``table.csv`` has one row per cell; ``summary.csv``, ``summary.md`` and ``summary.json`` one row
per setting (mean and standard deviation over repeats); the figures are drawn by
:mod:`hybrid_qiskit.noise.figures`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hybrid_qiskit.fileio import atomic_write_text, write_json
from hybrid_qiskit.noise.grid import GROUP_FIELDS, NOISE_KINDS

TABLE_FIELDS = ("model", "noise", "device", "level", "shots", "mitigation", "repeat", "seed",
                "accuracy", "loss", "mean_abs_z", "seconds")
NO_BASELINE = "no classical baseline given (pass --baseline RUN_DIR, a --model classical run)"


def aggregate(records: list[dict]) -> list[dict]:
    """Mean and standard deviation over repeats of each setting (grid order kept)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[f] for f in GROUP_FIELDS), []).append(r)
    rows = []
    for key, members in groups.items():
        row = dict(zip(GROUP_FIELDS, key))
        row["repeats"] = len(members)
        for metric in ("accuracy", "loss", "mean_abs_z"):
            values = [m[metric] for m in members if m.get(metric) is not None]
            row[f"{metric}_mean"] = float(np.mean(values)) if values else None
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        row["seconds"] = float(sum(m.get("seconds") or 0 for m in members))
        rows.append(row)
    return rows


def write_outputs(out_dir: Path, cfg, records: list[dict], models, baseline, run_dir) -> dict:
    """table.csv (one row per cell), summary.csv / .md / .json (per setting) and the plots.

    Returns:
        The summary (as written to summary.json); ``files`` lists what was written.
    """
    from hybrid_qiskit.noise import figures

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "table.csv", [{f: r.get(f) for f in TABLE_FIELDS} for r in records], TABLE_FIELDS)
    rows = aggregate(records)
    _write_csv(out_dir / "summary.csv", rows, list(rows[0]))
    atomic_write_text(out_dir / "summary.md", markdown_table(rows))
    classical = [r for r in rows if r["noise"] == "classical"]
    note = None if classical else NO_BASELINE
    samples = records[0].get("samples", 0) if records else 0
    title = f"{Path(run_dir).resolve().name}: {cfg.noise} noise, {samples} {cfg.split} images"
    plots = figures.sweep_figures(out_dir, cfg, rows, NOISE_KINDS[cfg.noise], title)

    summary = {
        "run_dir": str(run_dir),
        "output_dir": str(out_dir),
        "models": {m.label: {"run_dir": str(m.run_dir), "sha256_12": m.sha, "backend_trained_on": m.config.backend}
                   for m in models},
        "sweep": dict(asdict(cfg)),
        "fingerprint": cfg.fingerprint(),
        "samples": samples,
        "exact_accuracy": {r["model"]: r["accuracy_mean"] for r in rows if r["noise"] == "exact"},
        "classical_baseline": ({"run_dir": str(baseline.run_dir), "accuracy": classical[0]["accuracy_mean"]}
                               if classical else None),
        "classical_baseline_note": note,
        "cells": len(records),
        "cell_seconds": float(sum(r.get("seconds") or 0 for r in records)),
        "rows": rows,
        "files": ["cells.jsonl", "table.csv", "summary.csv", "summary.md", "summary.json", *plots],
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _write_csv(path: Path, rows: list[dict], fields) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def markdown_table(rows: list[dict]) -> str:
    """The per-setting summary as a Markdown table (accuracy and mean |⟨Z⟩|: mean ± std)."""

    def pm(row, metric):
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        if mean is None:
            return "-"
        return f"{mean:.3f}" + (f" ± {std:.3f}" if row["repeats"] > 1 else "")

    lines = ["| model | noise | device | level | shots | mitigation | repeats | accuracy | mean abs(Z) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['noise']} | {r['device']} | {r['level']} | {r['shots']} | "
                     f"{r['mitigation']} | {r['repeats']} | {pm(r, 'accuracy')} | {pm(r, 'mean_abs_z')} |")
    return "\n".join(lines) + "\n"
