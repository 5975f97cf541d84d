"""The ``submit``, ``jobs`` and ``fetch`` commands (registered by ``hybrid_qiskit.cli``).

Exit codes: 0 done (every requested result is in and decoded; a dry run; a declined plan);
3 some jobs still queued or running (fetch them later); 1 some jobs failed or were cancelled (the
reason is printed and in the ledger), some rows have no job (``submit --resume`` sends them), or
a run's ledger was skipped as damaged; 2 a usage error (one line); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time

EXIT_PENDING = 3
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def register_cli(sub) -> None:
    from hybrid_qiskit.cli_flags import add_backend_flags

    p = sub.add_parser(
        "submit", help="run a trained model's quantum head as hardware jobs (IBM Quantum, or offline)",
        description="Run the classical part locally, submit the quantum head's PUBs, record every job id in "
                    "RUN_DIR/jobs.sqlite before waiting. --backend ibm_runtime runs on an IBM QPU; "
                    "--backend ibm_local on a fake device, offline.")
    p.add_argument("run_dir", help="a trained run directory (model.pt, config.json)")
    add_backend_flags(p)
    p.add_argument("--mode", choices=("job", "batch", "session"), help="IBM execution mode (default: job)")
    p.add_argument("--max-execution-time", type=int, metavar="SECONDS",
                   help="cap each job's QPU time: IBM Quantum cancels a job that runs past it")
    p.add_argument("--layout", metavar="LAYOUT",
                   help="where the head runs: noise_aware (default: the device's best qubits by its calibration), "
                        "transpiler, trivial, physical qubits like 126,125,124,123 (a rehearsal's, pinned), or the "
                        "id of a submission of this run (its qubits)")
    p.add_argument("--samples", type=int, help="submit the first N images of the split (required, except with --resume)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--seed", type=int, help="transpiler/simulator seed (default: the run's)")
    p.add_argument("--max-rows", type=int, help="samples per job (default: sized to the service's job limits)")
    p.add_argument("--wait", action="store_true", help="wait for IBM Quantum jobs and fetch them (Ctrl-C stops waiting)")
    p.add_argument("--poll", type=float, help="seconds between status checks while waiting")
    p.add_argument("--resume", metavar="SUBMISSION",
                   help="send the rows of SUBMISSION that have no job (a submission interrupted part-way), "
                        "on its recorded backend, device and settings")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated QPU time; send nothing")
    p.add_argument("--yes", action="store_true", help="do not ask before sending a plan above --confirm-above")
    p.add_argument("--confirm-above", type=float, metavar="MINUTES",
                   help="ask before sending an IBM Quantum plan estimated above this many QPU-minutes (default: 1)")
    p.add_argument("--normalize-stats", choices=("off", "calibration", "batch"),
                   help="re-standardize ⟨Z⟩ per qubit with the device's statistics: from calibration rows (training "
                        "images) that every job runs after its samples (default for a model trained with "
                        "--normalize), from the submitted samples themselves, or off (default otherwise)")
    p.add_argument("--calibration-samples", type=int, metavar="N", help="images in the calibration set (default 64)")
    p.add_argument("--refit-readout", action="store_true",
                   help="at fetch, also re-fit the readout to the calibration rows' ⟨Z⟩ and their labels "
                        "(implies --normalize-stats calibration)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("jobs", help="list submitted jobs and their status; `jobs cancel` cancels them",
                       usage="hybrid-qiskit jobs [RUN_DIR] [--json]\n"
                             "       hybrid-qiskit jobs cancel (JOB_ID ... | --submission ID) [--run-dir RUN_DIR]",
                       description="List the jobs recorded in RUN_DIR's ledger, or in every run the job index knows. "
                                   "`jobs cancel` cancels IBM Quantum jobs that have not finished and records it "
                                   "in the ledger (their rows can be sent again with fetch --rerun).")
    p.add_argument("run_dir", nargs="?", help="a run directory (default: every run with jobs), or `cancel`")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="(cancel) the jobs to cancel")
    p.add_argument("--submission", metavar="ID", help="(cancel) every unfinished job of this submission")
    p.add_argument("--run-dir", dest="cancel_run_dir", metavar="RUN_DIR",
                   help="(cancel) the run whose ledger holds them (default: looked up in the job index)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_jobs)

    p = sub.add_parser("fetch", help="collect job results and finish the forward pass",
                       description="Retrieve results (IBM Quantum: service.job(id)), store them in the ledger, decode "
                                   "them with the run's checkpoint and write RUN_DIR/jobs/<submission>/predictions.csv "
                                   "and result.json. Fetching again changes nothing.")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.add_argument("--all-pending", action="store_true", help="every job not finished yet")
    p.add_argument("--run-dir", help="the run whose ledger holds the jobs (default: looked up in the job index)")
    p.add_argument("--wait", action="store_true", help="wait until the jobs finish (Ctrl-C stops waiting)")
    p.add_argument("--rerun", action="store_true",
                   help="submit the rows of failed or cancelled jobs again (local jobs whose process died re-run anyway)")
    p.add_argument("--poll", type=float, help="seconds between status checks while waiting")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("account", help="save an IBM Quantum account (the API key never on a command line)",
                       description="Save an IBM Quantum Platform account as the default one. The API key is "
                                   "read from a prompt that does not echo, or from --token-file, so it never "
                                   "reaches the shell history.")
    acct = p.add_subparsers(dest="account_command", required=True, metavar="save")
    q = acct.add_parser("save", help="save the default account (asks for the API key)")
    q.add_argument("--instance", help="the instance CRN (or name) to use by default")
    q.add_argument("--token-file", metavar="PATH", help="read the API key from PATH ('-': standard input)")
    q.add_argument("--name", help="a name for the account (default: the channel's default name)")
    q.add_argument("--overwrite", action="store_true", help="replace a saved account of the same name")
    q.set_defaults(func=_account_save)


# ------------------------------------------------------------------ handlers
def _submit(args) -> int:
    from hybrid_qiskit.cli_flags import backend_settings_from
    from hybrid_qiskit.jobs import submit

    settings = {k: v for k, v in backend_settings_from(args).items() if v is not None}
    if args.mode:
        settings["mode"] = args.mode
    if args.layout:
        settings["layout"] = args.layout
    if args.max_execution_time is not None:
        settings["max_execution_time"] = args.max_execution_time
    if args.seed is not None:
        settings["seed"] = args.seed
    confirm = _ask if sys.stdin.isatty() else None
    above = submit.DEFAULT_CONFIRM_ABOVE_MIN if args.confirm_above is None else args.confirm_above
    # Without --wait, IBM Quantum jobs are meant to be left queued: that is success, not "pending".
    return _guarded(lambda live: submit.submit(
        args.run_dir, backend=args.backend, settings=settings, samples=args.samples, split=args.split,
        max_rows=args.max_rows, wait=args.wait, poll=args.poll, resume=args.resume, dry_run=args.dry_run,
        yes=args.yes, confirm_above=above, confirm=confirm, say=_say, live=live,
        normalize_stats=args.normalize_stats, calibration_samples=args.calibration_samples,
        refit_readout=args.refit_readout), pending_ok=not args.wait)


def _account_save(args) -> int:
    from hybrid_qiskit.jobs import account

    token = account.read_token(args.token_file)
    print(account.save(token, instance=args.instance, name=args.name, overwrite=args.overwrite))
    return 0


def _ask(plan) -> bool:
    answer = input("send it? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _fetch(args) -> int:
    from hybrid_qiskit.jobs import fetch

    return _guarded(lambda live: fetch.fetch(
        args.job_ids, run_dir=args.run_dir, all_pending=args.all_pending, wait=args.wait, rerun=args.rerun,
        poll=args.poll, say=_say, live=live))


def _guarded(action, *, pending_ok: bool = False) -> int:
    """Run submit / fetch with a live status line; print the outcome; map it to an exit code."""
    from hybrid_qiskit.jobs.tracking import Interrupted

    line = StatusLine(sys.stderr)
    try:
        outcome = action(line.update)
    except Interrupted as stop:
        line.end()
        for jid in stop.remote_pending:
            print(f"job {jid} still queued; fetch it later with: hybrid-qiskit fetch {jid}", file=sys.stderr)
        for jid in stop.local_lost:
            print(f"local job {jid} stopped with this process; `hybrid-qiskit fetch {jid}` runs it again "
                  "from the ledger", file=sys.stderr)
        if stop.note:
            print(stop.note, file=sys.stderr)
        if stop.local_lost:
            # A local simulation runs in a worker thread nothing can cancel, and the interpreter
            # joins such threads at exit; the ledger is committed, so leave without waiting.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    line.end()
    if not outcome.sent:
        return 0
    for summary in outcome.summaries:
        _print_summary(summary)
    if outcome.pending:
        ids = " ".join(outcome.pending)
        print(f"{len(outcome.pending)} job(s) not finished yet; fetch them later with: hybrid-qiskit fetch {ids}")
    for sid, command in outcome.unsubmitted.items():
        print(f"submission {sid} has rows that were never submitted; send them with: {command}")
    if not (outcome.summaries or outcome.pending or outcome.failed or outcome.unsubmitted or outcome.problems):
        print("nothing to fetch: no pending jobs")
    if outcome.failed:
        print(f"{len(outcome.failed)} job(s) failed or were cancelled: {' '.join(outcome.failed)} "
              "(reasons: hybrid-qiskit jobs; submit them again with: hybrid-qiskit fetch --rerun JOB_ID)")
    if outcome.failed or outcome.unsubmitted or outcome.problems:
        return EXIT_FAILED
    return EXIT_PENDING if outcome.pending and not pending_ok else 0


def _say(message: str) -> None:
    print(message, flush=True)


def _print_summary(s: dict) -> None:
    where = s["backend"] + (f" {s['device']}" if s["device"] else "")
    shots = s["settings"].get("shots") or s["description"].get("shots")
    print(f"submission {s['submission_id']}: accuracy {s['accuracy']:.4f} on {s['samples']} {s['split']} samples "
          f"({where}{f', {shots} shots' if shots else ''}); exact simulation {s['exact_accuracy']:.4f}, "
          f"agreement with exact {s['agreement_with_exact']:.4f}")
    print(f"  predictions: {os.path.join(s['run_dir'], 'jobs', s['submission_id'], 'predictions.csv')}")


class StatusLine:
    """One status line, rewritten in place on a terminal; on a pipe, a line per change."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def update(self, states: dict[str, str], elapsed: float) -> None:
        done = sum(s == "DONE" for s in states.values())
        shown = "  ".join(f"{jid[:12]} {s or '...'}" for jid, s in list(states.items())[:4])
        more = f"  (+{len(states) - 4} more)" if len(states) > 4 else ""
        text = f"waiting {time.strftime('%H:%M:%S', time.gmtime(elapsed))}  {done}/{len(states)} done  {shown}{more}"
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.last)))
        elif text.split("  ", 1)[1] != self.last.split("  ", 1)[-1]:  # skip lines where only the clock moved
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = text

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
        self.last = ""


# ------------------------------------------------------------------ jobs
def _jobs(args) -> int:
    """List the ledgers read-only. One damaged ledger is reported and the others listed (exit 1)."""
    from pathlib import Path

    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.jobs.ledger import LEDGER_NAME, index_path, index_run_dirs

    if args.run_dir == "cancel" and not (Path("cancel") / LEDGER_NAME).exists():
        from hybrid_qiskit.jobs.cancel import cancel

        outcome = cancel(args.job_ids, submission=args.submission, run_dir=args.cancel_run_dir, say=_say)
        return EXIT_FAILED if outcome.failed else 0
    if args.job_ids or args.submission or args.cancel_run_dir:
        raise HybridQiskitError("job ids, --submission and --run-dir go with `jobs cancel`; "
                                "to list one run: hybrid-qiskit jobs RUN_DIR")
    if args.run_dir:
        if not (Path(args.run_dir) / LEDGER_NAME).exists():
            raise HybridQiskitError(f"{args.run_dir} has no job ledger ({LEDGER_NAME}); nothing was submitted from it")
        run_dirs = [str(Path(args.run_dir).resolve())]
    else:
        run_dirs = index_run_dirs()
    rows, problems, services = [], [], {}
    for rdir in run_dirs:
        if not (Path(rdir) / LEDGER_NAME).exists():
            rows.append({"run_dir": rdir, "job_id": None, "status": "MISSING", "reason": "run directory or ledger is gone"})
            continue
        try:
            rows.extend(_run_rows(rdir, services))
        except HybridQiskitError as exc:
            if args.run_dir:
                raise
            problems.append(str(exc))
            rows.append({"run_dir": rdir, "job_id": None, "status": "SKIPPED", "reason": str(exc)})
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no jobs (job index: {index_path()})" if not args.run_dir else "no jobs")
    else:
        _print_table(rows)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else 0


def _run_rows(rdir: str, services: dict) -> list[dict]:
    """One run's jobs, its rows never submitted, and IBM Quantum jobs found by tag (adopted when
    the ledger can be written)."""
    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.jobs.ledger import Ledger
    from hybrid_qiskit.jobs.recorded import adopt_orphans, find_orphans, may_hide_orphans

    with Ledger.for_run(rdir, readonly=True) as ledger:
        subs = {sid: ledger.submission(sid) for sid in ledger.submission_ids()}
        orphans = {}
        for sid, sub in subs.items():
            remote = any(j["remote"] for j in ledger.jobs(sid)) or sub["backend"] == "ibm_runtime"
            if remote and may_hide_orphans(ledger, sid):
                try:
                    orphans[sid] = find_orphans(ledger, sub, services, _say)
                except HybridQiskitError as exc:
                    print(f"note: could not check IBM Quantum for unrecorded jobs of {sid}: {exc}", file=sys.stderr)
    unrecorded = []
    if any(orphans.values()):
        try:
            with Ledger.for_run(rdir, create=False) as ledger:
                for sid, found in orphans.items():
                    adopt_orphans(ledger, subs[sid], services, _say, orphans=found)
        except HybridQiskitError as exc:  # a read-only run: show them, adopt later
            print(f"note: {exc}; `hybrid-qiskit fetch` from a writable copy records them", file=sys.stderr)
            unrecorded = [(sid, o) for sid, found in orphans.items() for o in found]
    rows = []
    from hybrid_qiskit.jobs.cost import job_estimate

    with Ledger.for_run(rdir, readonly=True) as ledger:
        for j in ledger.jobs():
            sub = subs.get(j["submission_id"]) or ledger.submission(j["submission_id"])
            rows.append({
                "run_dir": rdir, "job_id": j["job_id"], "submission_id": j["submission_id"],
                "backend": sub["backend"], "device": sub["device"], "remote": j["remote"],
                "rows": [j["row_start"], j["row_stop"]], "status": j["status"], "reason": j["reason"],
                "replaces": j["replaces"], "created_at": j["created_at"], "updated_at": j["updated_at"],
                "estimated_usage_seconds": job_estimate(sub.get("estimate"), j["row_stop"] - j["row_start"]),
                "usage_seconds": j.get("usage_seconds"),
            })
        for sid in ledger.submission_ids():
            sub = subs.get(sid) or ledger.submission(sid)
            for a, b in ledger.unsubmitted(sid):
                rows.append({
                    "run_dir": rdir, "job_id": None, "submission_id": sid, "backend": sub["backend"],
                    "device": sub["device"], "remote": None, "rows": [a, b], "status": "NOT SUBMITTED",
                    "reason": f"send with: hybrid-qiskit submit {rdir} --resume {sid}", "replaces": None,
                    "created_at": sub["created_at"], "updated_at": None,
                })
    for sid, o in unrecorded:
        sub = subs[sid]
        rows.append({
            "run_dir": rdir, "job_id": o["job_id"], "submission_id": sid, "backend": sub["backend"],
            "device": sub["device"], "remote": True, "rows": list(o["rows"]), "status": o["status"],
            "reason": "at IBM Quantum (found by its tag), not in the ledger", "replaces": o["replaces"],
            "created_at": "", "updated_at": None,
        })
    _note_waiting(rows, subs, services)
    return rows


def _note_waiting(rows: list[dict], subs: dict, services: dict) -> None:
    """Queued IBM Quantum jobs of an instance with no usage left: say that is what they wait for."""
    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.jobs.limits import usage_note
    from hybrid_qiskit.jobs.recorded import service_for

    notes: dict = {}
    for r in rows:
        if not (r.get("remote") and r["status"] in ("SUBMITTED", "QUEUED") and r.get("submission_id") in subs):
            continue
        try:
            note = usage_note(service_for(subs[r["submission_id"]], services), notes)
        except HybridQiskitError:  # no account here: list without the note
            return
        if note:
            r["reason"] = note


def _print_table(rows: list[dict]) -> None:
    """Rows grouped by run directory: id, status, backend/device, samples, submitted, reason."""
    current = None
    for r in rows:
        if r["run_dir"] != current:
            current = r["run_dir"]
            print(current)
            print(f"  {'JOB ID':<38} {'STATUS':<10} {'BACKEND':<24} {'ROWS':<11} {'SUBMITTED (UTC)':<26} SUBMISSION")
        if r["job_id"] is None and "rows" not in r:
            print(f"  {r['status']}: {r['reason']}")
            continue
        where = r["backend"] + (f"/{r['device']}" if r["device"] else "")
        rows_text = f"{r['rows'][0]}-{r['rows'][1] - 1}"
        print(f"  {r['job_id'] or '-':<38} {r['status']:<10} {where:<24} {rows_text:<11} {r['created_at']:<26} "
              f"{r['submission_id']}")
        if r["reason"]:
            print(f"      {r['reason']}")
        usage = _usage_text(r)
        if usage:
            print(f"      {usage}")


def _usage_text(r: dict) -> str | None:
    """``usage: estimated 12.3 s, actual 10.1 s (-18%)`` for a job; None when neither is known."""
    est, act = r.get("estimated_usage_seconds"), r.get("usage_seconds")
    if est is None and act is None:
        return None
    parts = [f"estimated {est:.1f} s" if est is not None else "no estimate"]
    if act is not None and not r.get("remote"):
        parts.append("actual: none, a local simulation uses no QPU time")
    elif act is not None:
        parts.append(f"actual {act:.1f} s" + (f" ({100 * (act - est) / est:+.0f}%)" if est else ""))
    elif r.get("remote") and r.get("status") in ("DONE", "ERROR", "CANCELLED"):
        parts.append("actual not reported yet")
    return "usage: " + ", ".join(parts)
