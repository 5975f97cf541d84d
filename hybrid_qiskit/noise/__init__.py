"""Noise-robustness sweeps: how a trained hybrid classifier degrades on noisy hardware.

``hybrid-qiskit noise-sweep RUN_DIR`` evaluates a run's checkpoint over a grid of cells
(noise kind x device x level x shots x mitigation x repeat) on the noisy Aer backends, beside two
references: the same model on exact simulation and, when given, a classical baseline run. Cells
are plain data, so they run in this process, in a local process pool (``--workers N``) or as Ray
tasks (``--ray [ADDRESS]``). The driver alone appends each finished cell to
``RUN_DIR/noise/<name>/cells.jsonl`` as it arrives, so a killed sweep resumes where it stopped;
then the table (``table.csv``, ``summary.csv/.md/.json``) and the plots
(``accuracy_vs_noise.png``, ``accuracy_vs_shots.png``) are written.

Modules, in the order a sweep uses them: ``grid`` (noise kinds, levels, a cell's backend
settings), ``plan`` (settings, models, the cells as plain-data tasks), ``cell`` (one cell in any
process, memory estimate), ``store`` (the resumable cell log), ``sweep`` (the driver; its cells
run on :mod:`hybrid_qiskit.executors`: serial, local pool, Ray), ``report`` and ``figures``
(tables and plots), ``mitigation`` (readout-error mitigation calibrated by circuits), ``cli``
(the subcommand).

Example:
    >>> from hybrid_qiskit.noise import SweepConfig, run_sweep
    >>> cfg = SweepConfig(noise="depolarizing", levels=("0", "0.01", "0.1"), shots=(None,), limit=50)
    >>> summary = run_sweep("runs/digits-hybrid", cfg)   # doctest: +SKIP
"""

from hybrid_qiskit.noise.cli import register_cli

_LAZY = {"SweepConfig": "plan", "run_sweep": "sweep", "calibrate_readout": "mitigation",
         "mitigate_z": "mitigation", "with_readout_mitigation": "mitigation"}

__all__ = ["register_cli", *_LAZY]


def __getattr__(name: str):
    # The CLI imports this package to build its parser: qiskit and numpy load only when used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hybrid_qiskit.noise.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hybrid_qiskit.noise' has no attribute {name!r}")
