"""hybrid_qiskit: a LeNet CNN feeding a Qiskit EstimatorQNN head, on exact, noisy and IBM backends.

Heavy modules (torch, qiskit) are imported by the submodules that need them, so that
`import hybrid_qiskit.errors` and the CLI's argument parsing stay fast.
"""

__version__ = "0.1.0"
