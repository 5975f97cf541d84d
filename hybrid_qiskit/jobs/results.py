"""Finishing a submission: the classical tail on the raw results, and what is written out.

When every row of a submission has a DONE job, the stored expectation values go through the
checkpoint's ``decode`` (the readout layer) and give predictions. Everything is derived from the
ledger and the checkpoint, so finishing twice writes the same files (fetch is idempotent).

Written into ``<run_dir>/jobs/<submission_id>/``:

* ``predictions.csv``: one row per sample: position in the split, index in the source pool,
  label, prediction, the exact-simulation prediction, the job that ran it, and its ⟨Z⟩ values;
* ``result.json``: accuracy, the exact simulation's accuracy and the agreement between the two,
  the backend and its settings, the jobs, the model hash, and the post-measurement normalization
  applied (the statistics each job's calibration rows gave).

With normalization, the raw ⟨Z⟩ (kept in predictions.csv) are re-standardized before ``decode``:
``(z - μ_backend) / σ_backend · σ_ref + μ_ref`` per qubit (:mod:`hybrid_qiskit.normalization`),
with μ_backend, σ_backend from the calibration rows of the job that ran the sample, or from all
the submission's samples (``batch``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np

from hybrid_qiskit.errors import HybridQiskitError


def model_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def outputs_dir(run_dir: str | Path, submission_id: str) -> Path:
    return Path(run_dir) / "jobs" / submission_id


def gather_expvals(submission: dict, jobs: list[dict]) -> tuple[np.ndarray, list[str | None]]:
    """The (N, n) expectation values of the DONE jobs, NaN where no job has finished, and the
    job id behind each row."""
    n_rows = len(submission["labels"])
    n_obs = len(submission["observables"])
    evs = np.full((n_rows, n_obs), np.nan)
    owner: list[str | None] = [None] * n_rows
    for job in jobs:
        if job["status"] == "DONE" and job["expvals"] is not None:
            a, b = job["row_start"], job["row_stop"]
            evs[a:b] = job["expvals"][: b - a]  # the calibration rows (if any) follow the samples
            owner[a:b] = [job["job_id"]] * (b - a)
    return evs, owner


def normalized(submission: dict, jobs: list[dict], evs: np.ndarray,
               owner: list[str]) -> tuple[np.ndarray, dict | None, tuple | None]:
    """The ⟨Z⟩ that ``decode`` gets (re-standardized when the submission asked for it), what was
    done (for result.json; None: nothing), and for a readout re-fit the calibration rows it
    learns from: (⟨Z⟩ of every counted job's calibration rows, re-standardized like its samples;
    their labels), else None."""
    from hybrid_qiskit.normalization import Stats, restandardize

    norm = submission.get("normalization")
    if not norm:
        return evs, None, None
    reference = Stats.from_dict(norm["reference_stats"])
    info = {k: v for k, v in norm.items() if k not in ("calibration_indices", "calibration_labels")}
    if norm["stats"] == "batch":
        source = Stats.of(evs)
        return restandardize(evs, source, reference), {**info, "backend_stats": source.to_dict()}, None
    out, per_job, calib, labels = np.array(evs), {}, [], []
    for job in jobs:
        rows = [i for i, o in enumerate(owner) if o == job["job_id"]]
        if not rows:
            continue  # replaced by a re-run, or not finished
        own = np.asarray(job["expvals"][job["row_stop"] - job["row_start"]:])
        source = Stats.of(own)
        out[rows] = restandardize(evs[rows], source, reference)
        per_job[job["job_id"]] = source.to_dict()
        calib.append(restandardize(own, source, reference))
        labels += norm.get("calibration_labels") or []
    refit = (np.concatenate(calib), labels) if norm.get("refit") else None
    return out, {**info, "backend_stats_by_job": per_job}, refit


def decode(run_dir: str | Path, submission: dict, evs: np.ndarray, refit: tuple | None = None) -> np.ndarray:
    """Predictions from raw ⟨Z⟩ values through the run's checkpoint (its readout layer; with
    ``refit``, (calibration ⟨Z⟩, labels) from :func:`normalized`, that readout re-fitted to them).

    Raises:
        HybridQiskitError: the checkpoint changed since submission (decoding with other weights
            would give wrong predictions silently) or is gone.
    """
    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model

    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise HybridQiskitError(f"no checkpoint at {path}: the results are kept in the ledger; restore model.pt to decode them")
    sha = model_sha256(path)
    if sha != submission["model_sha256"]:
        raise HybridQiskitError(
            f"{path} changed since submission {submission['submission_id']} (sha256 {submission['model_sha256'][:12]} "
            f"then, {sha[:12]} now); the raw results are kept in the ledger, but decoding them with other weights "
            "would give wrong predictions: restore the submitted checkpoint to finish"
        )
    # The exact backend only builds the (unused) quantum layer; decode is classical.
    model = restore_model(load_checkpoint(path), create_backend("statevector"))
    if refit is not None:
        from hybrid_qiskit.adaptation import refit_readout

        refit_readout(model, *refit, anchor=submission["normalization"]["refit"]["anchor"])
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        logits = model.decode(torch.as_tensor(evs, dtype=dtype))
    return logits.argmax(1).numpy()


def write_outputs(run_dir: str | Path, submission: dict, jobs: list[dict], evs: np.ndarray,
                  owner: list[str], predictions: np.ndarray, normalization: dict | None = None) -> dict:
    """Write predictions.csv and result.json; returns the summary (result.json's content)."""
    from hybrid_qiskit.fileio import atomic_write_text, write_json

    labels = np.asarray(submission["labels"])
    exact = np.asarray(submission["exact_predictions"])
    out = outputs_dir(run_dir, submission["submission_id"])
    sources = submission["source_indices"] or [None] * len(labels)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["position", "source_index", "label", "prediction", "exact_prediction", "job_id",
                     *(f"ev_{k}" for k in range(evs.shape[1]))])
    for i, pos in enumerate(submission["positions"]):
        writer.writerow([pos, "" if sources[i] is None else sources[i], int(labels[i]), int(predictions[i]),
                         int(exact[i]), owner[i], *(repr(float(v)) for v in evs[i])])
    atomic_write_text(out / "predictions.csv", buf.getvalue())
    done = [j for j in jobs if j["status"] == "DONE"]
    summary = {
        "submission_id": submission["submission_id"],
        "run_dir": str(run_dir),
        "split": submission["split"],
        "samples": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "exact_accuracy": float((exact == labels).mean()),
        "agreement_with_exact": float((predictions == exact).mean()),
        "backend": submission["backend"],
        "device": submission["device"],
        "settings": submission["settings"],
        "description": submission["description"],
        "model_sha256": submission["model_sha256"],
        "runtime_version": submission.get("runtime_version"),
        "backend_name": submission.get("backend_name"),
        "calibrated_at": submission.get("calibrated_at"),
        "submitted_at": submission["created_at"],
        "finished_at": max(j["finished_at"] or "" for j in done),
        "jobs": [{"job_id": j["job_id"], "rows": [j["row_start"], j["row_stop"]], "status": j["status"],
                  "reason": j["reason"], "replaces": j["replaces"], "finished_at": j["finished_at"]} for j in jobs],
        "predictions": "predictions.csv",
        "normalization": normalization,
    }
    write_json(out / "result.json", summary)
    return summary


def finish(run_dir: str | Path, submission: dict, jobs: list[dict]) -> dict | None:
    """Decode and write the outputs if every row has a result; None while some are missing."""
    evs, owner = gather_expvals(submission, jobs)
    if np.isnan(evs).any():
        return None
    adjusted, normalization, refit = normalized(submission, jobs, evs, owner)
    predictions = decode(run_dir, submission, adjusted, refit)
    return write_outputs(run_dir, submission, jobs, evs, owner, predictions, normalization)
