"""IBM Quantum hardware through qiskit-ibm-runtime: a named QPU or the least busy one.

The estimator is qiskit-ibm-runtime's executor-based ``Estimator``
(``qiskit_ibm_runtime.executor_estimator``). ``EstimatorV2`` is deprecated since 0.50 in its
favour; the new one does all pre- and post-processing (twirling, dynamical decoupling, TREX,
ZNE) on the client, so the local testing mode (``ibm_local``) runs exactly the processing a
hardware job does, and ``resilience_level`` takes effect there too (EstimatorV2's local mode
ignores it with a warning). Both take ``mode=backend | Session | Batch``.

Credentials come from ``QISKIT_IBM_TOKEN`` (with ``QISKIT_IBM_INSTANCE``, ``QISKIT_IBM_CHANNEL``)
or the saved account (``~/.qiskit/qiskit-ibm.json``); they are read only when this factory runs.
Without them the factory raises :class:`MissingCredentialsError` saying how to save one.

For the jobs module: ``handle.device`` is the ``IBMBackend`` (its configuration gives the
repetition delay for cost estimates), ``handle.estimator.mode`` the open Session / Batch (None in
job mode; ``handle.close()`` closes it, on error paths too), and :func:`runtime_service` rebuilds
a service from the ``instance`` / ``channel`` recorded in the description.

Open Plan accounts cannot open sessions (and a batch lives at most 10 minutes there):
``mode="session"`` on such an account is refused in one line that suggests ``batch``, before
anything is sent.
"""

from __future__ import annotations

from backends.registry import BackendHandle, register_backend
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError, MissingCredentialsError

MODES = ("job", "session", "batch")
DD_SEQUENCES = ("XX", "XpXm", "XY4")
NO_ACCOUNT = (
    'no IBM Quantum account found; save one with: python -c "from qiskit_ibm_runtime import '
    "QiskitRuntimeService; QiskitRuntimeService.save_account(token='...', instance='...', "
    'set_as_default=True)" or set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE)'
)
ESTIMATOR_KIND = "qiskit_ibm_runtime.executor_estimator.Estimator"


def runtime_service(
    *, instance: str | None = None, channel: str | None = None, account: str | None = None
):
    """A ``QiskitRuntimeService`` from the environment or the saved account.

    Args:
        instance: the IBM Cloud instance (CRN or name); default: the account's.
        channel: ``ibm_quantum_platform`` or ``ibm_cloud``; default: the account's.
        account: the name of a saved account; default: the default one.

    Returns:
        The service (it has contacted IBM Quantum).

    Raises:
        MissingCredentialsError: no token in the environment and no saved account.
        HybridQiskitError: IBM Quantum could not be reached or refused the account.
    """
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountManager, AccountNotFoundError

    try:  # the same lookup the service does (env vars, then the saved file), without the network
        AccountManager.get(name=account, channel=channel)
    except AccountNotFoundError:
        raise MissingCredentialsError(NO_ACCOUNT) from None
    try:
        return QiskitRuntimeService(channel=channel, instance=instance, name=account)
    except Exception as exc:  # network, token or instance errors: one line for the CLI
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HybridQiskitError(f"could not connect to IBM Quantum: {first}") from None


def _dd_sequence(dynamical_decoupling) -> str | None:
    """None (off) or the DD sequence name, from a bool or a sequence name."""
    if dynamical_decoupling in (None, False):
        return None
    if dynamical_decoupling is True:
        return "XX"
    if dynamical_decoupling in DD_SEQUENCES:
        return dynamical_decoupling
    raise HybridQiskitError(
        f"dynamical_decoupling must be true/false or one of {', '.join(DD_SEQUENCES)}, got {dynamical_decoupling!r}"
    )


def runtime_handle(
    name: str,
    backend,
    *,
    shots: int,
    optimization_level: int,
    resilience_level: int,
    mode: str,
    twirling: bool | None,
    dynamical_decoupling,
    seed: int | None,
    local: bool,
    extra: dict | None = None,
) -> BackendHandle:
    """The handle for the runtime's executor-based Estimator on ``backend`` (QPU or fake device).

    Raises:
        HybridQiskitError: a bad shots, optimization level, resilience level, mode or DD value.
    """
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime import Batch, Session
    from qiskit_ibm_runtime.executor_estimator import Estimator

    from backends.devices import guard_width
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    if not isinstance(shots, int) or shots < 1:
        raise HybridQiskitError(f"shots must be a positive integer, got {shots!r}")
    if optimization_level not in (0, 1, 2, 3):
        raise HybridQiskitError(
            f"optimization_level must be 0, 1, 2 or 3, got {optimization_level}"
        )
    if resilience_level not in (0, 1, 2):
        raise HybridQiskitError(f"resilience_level must be 0, 1 or 2, got {resilience_level}")
    if mode not in MODES:
        raise HybridQiskitError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    dd = _dd_sequence(dynamical_decoupling)

    try:
        execution = {
            "job": lambda: backend,
            "session": lambda: Session(backend=backend),
            "batch": lambda: Batch(backend=backend),
        }[mode]()
    except Exception as exc:  # the service refused to open it: one line, with the way out
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("; Open Plan accounts cannot open sessions: use --mode batch (or job)" if mode == "session"
                else "; try --mode job")
        raise HybridQiskitError(f"could not open a {mode} on {backend.name}: {first}{hint}") from None
    precision = shots_precision(shots)
    estimator = Estimator(mode=execution)
    options = estimator.options
    options.default_precision = precision
    options.default_shots = shots  # the QNN passes the precision for these same shots
    options.resilience_level = resilience_level
    if twirling is not None:
        options.twirling.enable_gates = bool(twirling)
    if dd is not None:
        options.dynamical_decoupling.enable = True
        options.dynamical_decoupling.sequence_type = dd
    if local and seed is not None:  # simulator options only mean something in local mode
        options.simulator.seed_simulator = seed
    return BackendHandle(
        name=name,
        estimator=estimator,
        gradient=BatchedParamShiftEstimatorGradient(estimator, precision=precision),
        pass_manager=guard_width(
            generate_preset_pass_manager(
                optimization_level=optimization_level, backend=backend, seed_transpiler=seed
            ),
            backend,
        ),
        precision=precision,
        exact=False,
        remote=not local,  # hardware jobs outlive this process; local-mode jobs do not
        device=backend,
        description={
            "name": name,
            "device": backend.name,
            "num_qubits": backend.num_qubits,
            "mode": mode,
            "session_id": getattr(execution, "session_id", None),
            "shots": shots,
            "optimization_level": optimization_level,
            "resilience_level": resilience_level,
            "twirling": twirling
            if twirling is not None
            else f"resilience-level default ({resilience_level})",
            "dynamical_decoupling": dd,
            "seed": seed,
            "estimator": ESTIMATOR_KIND + (" (local testing mode, Aer)" if local else ""),
            "gradient": "parameter-shift, batched (one PUB per circuit, on the ISA circuit)",
            **(extra or {}),
        },
    )


def _plan_of(service, backend) -> str | None:
    """The plan ("open", "premium", ...) of the instance a backend belongs to, if the service
    says; None when it cannot tell (then the session request itself decides)."""
    try:
        instance = getattr(backend, "_instance", None) or service.active_instance()
        for inst in service.instances():
            if instance in (inst.get("crn"), inst.get("name")):
                return inst.get("plan")
    except Exception:  # noqa: BLE001 - unknown plan: do not block, the service will answer
        return None
    return None


@register_backend(
    "ibm_runtime",
    summary="IBM Quantum QPU via qiskit-ibm-runtime (executor Estimator; job/session/batch)",
    needs_credentials=True,
)
def ibm_runtime(
    *,
    device: str | None = None,
    shots: int = 1024,
    optimization_level: int = 1,
    resilience_level: int = 1,
    mode: str = "job",
    twirling: bool | None = None,
    dynamical_decoupling: bool | str | None = None,
    instance: str | None = None,
    channel: str | None = None,
    seed: int | None = None,
) -> BackendHandle:
    """A QPU: ``device`` by name (e.g. ``ibm_brisbane``), or the least busy operational one.

    ``twirling`` turns gate twirling on/off (None: the resilience level's default);
    ``dynamical_decoupling`` is true/false or a sequence (XX, XpXm, XY4); ``seed`` seeds the
    transpiler (hardware has no simulator seed).

    Raises:
        MissingCredentialsError: no account (the message says how to save one).
        HybridQiskitError: no connection, unknown device, or a bad setting.
    """
    service = runtime_service(instance=instance, channel=channel)
    try:
        backend = (
            service.backend(device)
            if device
            else service.least_busy(operational=True, simulator=False)
        )
    except Exception as exc:
        raise HybridQiskitError(
            f"no IBM Quantum backend {device or '(least busy)'}: {str(exc).splitlines()[0]}"
        ) from None
    account = service.active_account() or {}
    if mode == "session":
        plan = _plan_of(service, backend)
        if plan is not None and "open" in plan.lower():
            raise HybridQiskitError(
                f"--mode session is not available on the Open Plan (instance {account.get('instance') or '?'}); "
                "use --mode batch (jobs grouped, at most 10 minutes on the Open Plan) or --mode job"
            )
    return runtime_handle(
        "ibm_runtime",
        backend,
        shots=shots,
        optimization_level=optimization_level,
        resilience_level=resilience_level,
        mode=mode,
        twirling=twirling,
        dynamical_decoupling=dynamical_decoupling,
        seed=seed,
        local=False,
        extra={"instance": account.get("instance"), "channel": account.get("channel")},
    )
