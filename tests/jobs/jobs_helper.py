"""Runs the ``hybrid-qiskit`` CLI in a subprocess with test hooks (crash and concurrency tests).

    python -m tests.jobs.jobs_helper [--fake-ibm STORE] [--stall-local] [--observe FILE] -- ARGS...

* ``--fake-ibm STORE``: IBM Quantum's REST API is ``tests.jobs.ibm_rest_fake`` (the runtime's own client
  code runs above it).
* ``--stall-local``: local jobs report RUNNING forever, like a long simulation, so the test can
  kill the process while it waits.
* ``--observe FILE``: each time a job's result is first asked for, append to FILE (JSON lines)
  what the run's ledger held for that job at that moment: proof the id was recorded before any
  result existed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path


def _stall_local_jobs() -> None:
    from qiskit.providers import JobStatus
    from qiskit_ibm_runtime.fake_provider.local_runtime_job import LocalRuntimeJob

    LocalRuntimeJob.status = lambda self: JobStatus.RUNNING


def _observe(path: Path, ledger: Path) -> None:
    from qiskit_ibm_runtime.fake_provider.local_runtime_job import LocalRuntimeJob

    original = LocalRuntimeJob.result
    seen: set[str] = set()

    def result(self):
        if self.job_id() not in seen:
            seen.add(self.job_id())
            conn = sqlite3.connect(ledger)
            row = conn.execute("SELECT status, expvals IS NOT NULL FROM jobs WHERE job_id = ?",
                               (self.job_id(),)).fetchone()
            conn.close()
            with open(path, "a") as fh:
                fh.write(json.dumps({"job_id": self.job_id(), "recorded": row is not None,
                                     "status": row and row[0], "had_results": bool(row and row[1])}) + "\n")
        return original(self)

    LocalRuntimeJob.result = result


def fake_submission(sid: str) -> dict:
    """A minimal, valid ``submissions`` record (for ledger tests that need no model)."""
    import numpy as np

    return {
        "submission_id": sid, "created_at": "2026-01-01T00:00:00+00:00", "run_dir": "/nowhere",
        "model_sha256": "0" * 64, "backend": "ibm_local", "device": "fake_manila", "settings": {"shots": 8},
        "description": {}, "split": "test", "positions": [0, 1, 2], "source_indices": None, "labels": [0, 1, 2],
        "circuit_qpy": b"", "parameter_names": [], "observables": [], "parameter_values": np.zeros((3, 2)),
        "exact_expvals": np.zeros((3, 4)), "exact_predictions": [0, 0, 0], "max_rows": 3,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake-ibm", type=Path)
    parser.add_argument("--stall-local", action="store_true")
    parser.add_argument("--observe", type=Path)
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    if args.fake_ibm:
        from tests.jobs.ibm_rest_fake import install as install_rest

        install_rest(args.fake_ibm)
    if args.stall_local:
        _stall_local_jobs()
    if args.observe:
        _observe(args.observe, Path(cli[1]) / "jobs.sqlite")  # cli: submit RUN_DIR ...
    from hybrid_qiskit.cli import main as cli_main

    return cli_main(cli)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
