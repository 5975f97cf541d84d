"""Hardware inference jobs: submit a trained model's quantum head, remember it, collect it.

Train on a simulator, then run inference on a QPU where jobs queue for minutes to hours::

    hybrid-qiskit submit runs/digits --backend ibm_runtime --device ibm_torino --samples 200
    hybrid-qiskit jobs                      # every job, with its status
    hybrid-qiskit fetch --all-pending       # results -> runs/digits/jobs/<submission>/predictions.csv

* :mod:`~hybrid_qiskit.jobs.pubs`: the quantum head as Estimator PUBs, chunked to the service's limits.
* :mod:`~hybrid_qiskit.jobs.ledger`: ``<run_dir>/jobs.sqlite`` (transactional, multi-process safe)
  and the user-level index that maps a job id to its run.
* :mod:`~hybrid_qiskit.jobs.runner`: submit and fetch, local jobs versus IBM Quantum jobs.
* :mod:`~hybrid_qiskit.jobs.results`: the classical tail and the files written.
* :mod:`~hybrid_qiskit.jobs.commands`: the CLI.

Importing this package stays light (the CLI builds its parser from it); the heavy modules load
when a command runs.
"""

from hybrid_qiskit.jobs.commands import register_cli

__all__ = ["register_cli"]
