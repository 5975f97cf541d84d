"""The ``submit``, ``jobs`` and ``fetch`` commands (registered by ``hybrid_qiskit.cli``).

Exit codes: 0 done (every requested result is in and decoded); 3 some jobs still queued or
running (fetch them later); 1 some jobs failed or were cancelled (the reason is printed and in
the ledger); 2 a usage error (one line); 130 interrupted (Ctrl-C) while waiting.
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
    from hybrid_qiskit.cli import add_backend_flags

    p = sub.add_parser(
        "submit", help="run a trained model's quantum head as hardware jobs (IBM Quantum, or offline)",
        description="Run the classical part locally, submit the quantum head's PUBs, record every job id in "
                    "RUN_DIR/jobs.sqlite before waiting. --backend ibm_runtime runs on an IBM QPU; "
                    "--backend ibm_local on a fake device, offline.")
    p.add_argument("run_dir", help="a trained run directory (model.pt, config.json)")
    add_backend_flags(p)
    p.add_argument("--mode", choices=("job", "batch", "session"), help="IBM execution mode (default: job)")
    p.add_argument("--samples", type=int, required=True, help="submit the first N images of the split")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--seed", type=int, help="transpiler/simulator seed (default: the run's)")
    p.add_argument("--max-rows", type=int, help="samples per job (default: sized to the service's job limits)")
    p.add_argument("--wait", action="store_true", help="wait for IBM Quantum jobs and fetch them (Ctrl-C stops waiting)")
    p.add_argument("--poll", type=float, help="seconds between status checks while waiting")
    p.set_defaults(func=_submit)

    p = sub.add_parser("jobs", help="list submitted jobs and their status",
                       description="List the jobs recorded in RUN_DIR's ledger, or in every run the job index knows.")
    p.add_argument("run_dir", nargs="?", help="a run directory (default: every run with jobs)")
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


# ------------------------------------------------------------------ handlers
def _submit(args) -> int:
    from hybrid_qiskit.cli import backend_settings_from
    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.jobs import submit

    if not args.backend:
        raise HybridQiskitError("submit needs --backend: ibm_runtime (an IBM QPU) or ibm_local (a fake device, offline)")
    settings = {k: v for k, v in backend_settings_from(args).items() if v is not None}
    if args.mode:
        settings["mode"] = args.mode
    if args.seed is not None:
        settings["seed"] = args.seed
    # Without --wait, IBM Quantum jobs are meant to be left queued: that is success, not "pending".
    return _guarded(lambda live: submit.submit(
        args.run_dir, backend=args.backend, settings=settings, samples=args.samples, split=args.split,
        max_rows=args.max_rows, wait=args.wait, poll=args.poll, say=_say, live=live), pending_ok=not args.wait)


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
        if stop.local_lost:
            # A local simulation runs in a worker thread nothing can cancel, and the interpreter
            # joins such threads at exit; the ledger is committed, so leave without waiting.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    line.end()
    for summary in outcome.summaries:
        _print_summary(summary)
    if outcome.pending:
        ids = " ".join(outcome.pending)
        print(f"{len(outcome.pending)} job(s) not finished yet; fetch them later with: hybrid-qiskit fetch {ids}")
    if not (outcome.summaries or outcome.pending or outcome.failed):
        print("nothing to fetch: no pending jobs")
    if outcome.failed:
        print(f"{len(outcome.failed)} job(s) failed or were cancelled: {' '.join(outcome.failed)} "
              "(reasons: hybrid-qiskit jobs; submit them again with: hybrid-qiskit fetch --rerun JOB_ID)")
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
    from pathlib import Path

    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.jobs.ledger import LEDGER_NAME, Ledger, index_path, index_run_dirs

    if args.run_dir:
        if not (Path(args.run_dir) / LEDGER_NAME).exists():
            raise HybridQiskitError(f"{args.run_dir} has no job ledger ({LEDGER_NAME}); nothing was submitted from it")
        run_dirs = [str(Path(args.run_dir).resolve())]
    else:
        run_dirs = index_run_dirs()
    rows = []
    for rdir in run_dirs:
        if not (Path(rdir) / LEDGER_NAME).exists():
            rows.append({"run_dir": rdir, "job_id": None, "status": "MISSING", "reason": "run directory or ledger is gone"})
            continue
        with Ledger.for_run(rdir) as ledger:
            subs = {sid: ledger.submission(sid) for sid in ledger.submission_ids()}
            for j in ledger.jobs():
                sub = subs[j["submission_id"]]
                rows.append({
                    "run_dir": rdir, "job_id": j["job_id"], "submission_id": j["submission_id"],
                    "backend": sub["backend"], "device": sub["device"], "remote": j["remote"],
                    "rows": [j["row_start"], j["row_stop"]], "status": j["status"], "reason": j["reason"],
                    "replaces": j["replaces"], "created_at": j["created_at"], "updated_at": j["updated_at"],
                })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no jobs (job index: {index_path()})" if not args.run_dir else "no jobs")
        return 0
    _print_table(rows)
    return 0


def _print_table(rows: list[dict]) -> None:
    """Rows grouped by run directory: id, status, backend/device, samples, submitted, reason."""
    current = None
    for r in rows:
        if r["run_dir"] != current:
            current = r["run_dir"]
            print(current)
            print(f"  {'JOB ID':<38} {'STATUS':<10} {'BACKEND':<24} {'ROWS':<11} {'SUBMITTED (UTC)':<26} SUBMISSION")
        if r["job_id"] is None:
            print(f"  {r['status']}: {r['reason']}")
            continue
        where = r["backend"] + (f"/{r['device']}" if r["device"] else "")
        rows_text = f"{r['rows'][0]}-{r['rows'][1] - 1}"
        print(f"  {r['job_id']:<38} {r['status']:<10} {where:<24} {rows_text:<11} {r['created_at']:<26} {r['submission_id']}")
        if r["reason"]:
            print(f"      {r['reason']}")
