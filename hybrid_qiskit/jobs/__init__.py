"""Hardware inference jobs: submit a trained model's quantum head, remember it, collect it.

Train on a simulator, then run inference on a QPU where jobs queue for minutes to hours::

    hybrid-qiskit submit runs/digits --backend ibm_runtime --device ibm_fez --samples 200 --dry-run
    hybrid-qiskit submit runs/digits --backend ibm_runtime --device ibm_fez --samples 200
    hybrid-qiskit jobs                      # every job, with its status
    hybrid-qiskit fetch --all-pending       # results -> runs/digits/jobs/<submission>/predictions.csv

* :mod:`~hybrid_qiskit.jobs.pubs`: the quantum head as Estimator PUBs, chunked to the service's limits.
* :mod:`~hybrid_qiskit.jobs.cost`: the plan printed before sending: circuits, shots, mitigation
  overhead, estimated QPU time; chunk sizes with the overheads counted.
* :mod:`~hybrid_qiskit.jobs.ledger`: ``<run_dir>/jobs.sqlite`` (transactional, multi-process safe,
  read-only for listing, never silently replaced when damaged) and the user-level index that maps
  a job id to its run; :mod:`~hybrid_qiskit.jobs.sqlitefile` opens, creates and checks the files.
* :mod:`~hybrid_qiskit.jobs.submit` / :mod:`~hybrid_qiskit.jobs.fetch`: sending (and resuming)
  submissions; collecting, adopting and re-running jobs. :mod:`~hybrid_qiskit.jobs.tracking`
  holds what they share (waiting, recording results).
* :mod:`~hybrid_qiskit.jobs.recorded`: a submission's recorded backend put back to work (pinned
  re-runs), its job tags, and the jobs found at IBM Quantum by tag.
* :mod:`~hybrid_qiskit.jobs.results`: the classical tail and the files written.
* :mod:`~hybrid_qiskit.jobs.commands`: the CLI.

Importing this package stays light (the CLI builds its parser from it); the heavy modules load
when a command runs.
"""

from hybrid_qiskit.jobs.commands import register_cli

__all__ = ["register_cli"]
