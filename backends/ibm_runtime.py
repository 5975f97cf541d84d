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
job mode, and on IBM Quantum until the first job is sent: a Batch exists at IBM from the moment
it is created, so building a handle, a cost plan or a dry run sends nothing; ``handle.close()``
closes it, on error paths too), and :func:`runtime_service` rebuilds
a service from the ``instance`` / ``channel`` recorded in the description.

Open Plan accounts cannot open sessions (and a batch lives at most 10 minutes there):
``mode="session"`` on such an account is refused in one line that suggests ``batch``, before
anything is sent.
"""

from __future__ import annotations

from backends.registry import BackendHandle, register_backend
from backends.settings import IbmRuntimeSettings
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError, MissingCredentialsError

MODES = ("job", "session", "batch")
DD_SEQUENCES = ("XX", "XpXm", "XY4")
SAVE_HOW = ("save one with: hybrid-qiskit account save --instance CRN (asks for the API key; or "
            "QiskitRuntimeService.save_account(token=..., instance=..., set_as_default=True) in Python), or set "
            "QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE)")
NO_ACCOUNT = f"no IBM Quantum account found; {SAVE_HOW}"
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
    from qiskit_ibm_runtime.accounts.exceptions import AccountsError

    try:  # the same lookup the service does (env vars, then the saved file), without the network
        AccountManager.get(name=account, channel=channel)
    except AccountNotFoundError:
        raise MissingCredentialsError(NO_ACCOUNT) from None
    except AccountsError as exc:  # a saved account the runtime refuses (a retired channel, a bad field)
        raise MissingCredentialsError(_invalid_account(exc)) from None
    try:
        return QiskitRuntimeService(channel=channel, instance=instance, name=account)
    except Exception as exc:  # network, token or instance errors: one line for the CLI
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HybridQiskitError(f"could not connect to IBM Quantum: {first}") from None


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def live_snapshot(name: str, *, instance: str | None = None, channel: str | None = None):
    """QPU ``name``'s configuration and current calibration as a fake device (a ``FakeBackendV2``),
    so the local testing mode (``ibm_local --device ibm_fez``) rehearses on the qubits, errors and
    layout a job sent now would get. Needs an account; reads, sends nothing.

    Raises:
        MissingCredentialsError: no (usable) account.
        HybridQiskitError: no connection, or no such QPU for this account.
    """
    import json

    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2
    from qiskit_ibm_runtime.utils.backend_decoder import (
        decode_backend_configuration,
        properties_from_server_data,
    )

    service = runtime_service(instance=instance, channel=channel)
    try:
        qpu = service.backend(name)
        conf = json.loads(json.dumps(qpu.configuration().to_dict(), default=_iso))
        props = qpu.properties()
    except Exception as exc:  # noqa: BLE001 - the service's answer, as one line
        raise HybridQiskitError(f"no IBM Quantum backend {name}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if props is None:
        raise HybridQiskitError(f"{name} reports no calibration: nothing to rehearse on")
    props = json.loads(json.dumps(props.to_dict(), default=_iso))
    stamp = str(props.get("last_update_date") or "")
    decode_backend_configuration(conf)
    conf["backend_name"] = name
    # The calibration time is part of the version: reductions are cached by name and version.
    conf["backend_version"] = f"{conf.get('backend_version') or '?'}, calibration {stamp}"
    properties_from_server_data(props)

    class LiveSnapshot(FakeBackendV2):
        """A QPU's configuration and calibration at one moment, as a fake device."""

        conf_filename = props_filename = dirname = None
        backend_name = name
        calibrated_at = stamp

        def _get_conf_dict_from_json(self):
            return dict(conf)

        def _set_props_dict_from_json(self):
            self._props_dict = dict(props)

    return LiveSnapshot()


def _invalid_account(exc: Exception) -> str:
    """One line for a saved account the runtime refuses, with what to do."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    retired = ("; the ibm_quantum channel (IBM Quantum Platform Classic) is retired: accounts now use "
               "ibm_quantum_platform, an IBM Cloud API key and an instance CRN") if "'ibm_quantum'" in text else ""
    return (f"the saved IBM Quantum account cannot be used ({text}){retired}; save a new default account with: "
            "hybrid-qiskit account save --instance CRN --overwrite (asks for the API key), or set "
            "QISKIT_IBM_TOKEN and QISKIT_IBM_INSTANCE")


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
    layout="noise_aware",
    max_execution_time: int | None = None,
) -> BackendHandle:
    """The handle for the runtime's executor-based Estimator on ``backend`` (QPU or fake device).

    Raises:
        HybridQiskitError: a bad shots, optimization level, resilience level, mode or DD value.
    """
    from qiskit_ibm_runtime.executor_estimator import Estimator

    from backends.layout import LayoutPassManager, layout_text
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
    # Checked (one line) before a Session / Batch is opened.
    pass_manager = LayoutPassManager(backend, optimization_level=optimization_level, seed=seed, layout=layout)

    if max_execution_time is not None and (isinstance(max_execution_time, bool)
                                           or not isinstance(max_execution_time, int) or max_execution_time < 1):
        raise HybridQiskitError(f"max_execution_time must be a positive number of seconds, got {max_execution_time!r}")
    precision = shots_precision(shots)
    if mode == "job":
        estimator = Estimator(mode=backend)
    elif local:  # local mode sends nothing: open it now
        estimator = Estimator(mode=_open_mode(mode, backend))
    else:  # nothing reaches IBM Quantum before the first job does (a dry run sends nothing)
        estimator = DeferredModeEstimator(backend, mode)
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
    if max_execution_time is not None:  # the service cancels a job past this much QPU time
        options.max_execution_time = max_execution_time
    return BackendHandle(
        name=name,
        estimator=estimator,
        gradient=BatchedParamShiftEstimatorGradient(estimator, precision=precision),
        pass_manager=pass_manager,
        precision=precision,
        exact=False,
        remote=not local,  # hardware jobs outlive this process; local-mode jobs do not
        device=backend,
        description={
            "name": name,
            "device": backend.name,
            "num_qubits": backend.num_qubits,
            "mode": mode,
            "session_id": getattr(estimator.mode, "session_id", None),
            "shots": shots,
            "optimization_level": optimization_level,
            "layout": layout_text(pass_manager.layout),
            "resilience_level": resilience_level,
            "max_execution_time": max_execution_time,
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


def _open_mode(mode: str, backend):
    """A Session or Batch on ``backend``; a refusal is one line with the way out."""
    from qiskit_ibm_runtime import Batch, Session

    try:
        return (Session if mode == "session" else Batch)(backend=backend)
    except Exception as exc:  # the service refused to open it: one line, with the way out
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("; Open Plan accounts cannot open sessions: use --mode batch (or job)" if mode == "session"
                else "; try --mode job")
        raise HybridQiskitError(f"could not open a {mode} on {backend.name}: {first}{hint}") from None


class DeferredModeEstimator:
    """The runtime ``Estimator`` in a Session or Batch that opens with the first job it sends.

    Building the handle, planning a submission and a dry run send nothing to IBM Quantum (a
    ``Batch`` is created at IBM the moment it is constructed). ``options`` are the estimator's
    own, shared with it once it exists; ``mode`` is the open Session / Batch, None before."""

    def __init__(self, backend, mode: str):
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions

        self._backend, self._kind = backend, mode
        self.options = EstimatorOptions()
        self.mode = None
        self._estimator = None

    def backend(self):
        return self._backend

    def run(self, pubs, *, precision: float | None = None):
        from qiskit_ibm_runtime.executor_estimator import Estimator

        if self._estimator is None:
            self.mode = _open_mode(self._kind, self._backend)
            self._estimator = Estimator(mode=self.mode, options=self.options)
        return self._estimator.run(pubs, precision=precision)


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
    settings=IbmRuntimeSettings,
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
    layout: str | None = "noise_aware",
    max_execution_time: int | None = None,
    seed: int | None = None,
) -> BackendHandle:
    """A QPU: ``device`` by name (e.g. ``ibm_brisbane``), or the least busy operational one.

    ``twirling`` turns gate twirling on/off (None: the resilience level's default);
    ``dynamical_decoupling`` is true/false or a sequence (XX, XpXm, XY4); ``seed`` seeds the
    transpiler (hardware has no simulator seed). ``layout`` places the head
    (:mod:`backends.layout`): ``noise_aware`` (the best qubits of the device's current
    calibration), ``transpiler``, ``trivial``, or physical qubits (a rehearsal's, pinned).
    ``max_execution_time`` (seconds of QPU time) caps each job: the service cancels it past that.

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
        layout=layout,
        max_execution_time=max_execution_time,
        extra={"instance": account.get("instance"), "channel": account.get("channel")},
    )
