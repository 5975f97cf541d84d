"""Run the README's commands, then the guides', in order, as a newcomer would, in a fresh folder.

    python experiments/readme_walkthrough.py              # run them all (digits); stops nothing on failure
    python experiments/readme_walkthrough.py --list       # what would run, what is skipped and why
    python experiments/readme_walkthrough.py --workdir D  # keep the runs and the logs in D

Commands are the lines of fenced code blocks that start with ``make `` or ``.venv/bin/``, in the
order of :data:`DOCUMENTS` (README.md, then the guides in docs/guides/) and each document's own
order (a trailing ``\\`` joins lines). ``make X`` runs the
Makefile's recipe for X; ``.venv/bin/hybrid-qiskit`` and ``.venv/bin/python`` run on this
checkout with this interpreter. Each command runs in the work folder (``experiments/`` linked in,
``runs/`` starting empty; the job index in ``HYBRID_QISKIT_HOME`` there too), and its output goes
to ``logs/NN.log``.

Skipped, with the reason printed: commands that need the internet or dataset files that are not
here (``--download``, MNIST/Fashion-MNIST/CIFAR-10), an IBM Quantum account (``ibm_runtime``,
``save_account``, ``account save``), a placeholder (``JOB_ID``), and ``make test`` (the suite this runs in).
``make bench`` runs in its ``--quick`` form (the full benchmark times the stock stack for minutes).

Exit status 0 when every command that ran succeeded. ``tests/e2e/test_walkthrough.py`` runs this
(slow tier: ``pytest -m slow``) and checks its parsing in the default tier.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_DATA = ("digits",)
# Whose commands run, in this order: the README, then the guides in the order docs/index.md lists
# them. A guide's commands may use runs that the README's or an earlier guide's commands made
# (runs/digits-hybrid from `make train`, runs/digits4 from the hardware quick start).
DOCUMENTS = (
    "README.md",
    "docs/guides/command-line.md",
    "docs/guides/backends.md",
    "docs/guides/hardware.md",
    "docs/guides/noise.md",
    "docs/guides/performance.md",
    "docs/guides/datasets.md",
    "docs/guides/clusters.md",
    "docs/guides/development.md",
)


@dataclass
class Step:
    text: str  # the command as the README writes it (continuations joined)
    argv: list[str] | None  # what runs; None: skipped
    skip: str | None = None  # why it is skipped


def readme_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The commands of one Markdown document's code blocks (the README by default), in order."""
    commands, fenced, pending = [], False, ""
    for line in readme.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.startswith(("make ", ".venv/bin/")):
            commands.append(re.sub(r"\s+#.*$", "", line).strip())  # a trailing comment
    return commands


def walkthrough_commands(documents: tuple[str, ...] = DOCUMENTS) -> list[str]:
    """The commands of every document in ``documents`` (paths from the repository root), in order."""
    return [command for name in documents for command in readme_commands(ROOT / name)]


def make_recipe(target: str, makefile: Path = ROOT / "Makefile") -> list[list[str]]:
    """The command lines of a Makefile target's recipe (comments dropped)."""
    lines, inside = [], False
    for line in makefile.read_text().splitlines():
        if re.match(rf"^{re.escape(target)}\s*:", line):
            inside = True
            continue
        if inside:
            if not line.startswith("\t"):
                break
            body = line.strip()
            if body and not body.startswith("#"):
                lines.append(shlex.split(body))
    return lines


def _local(argv: list[str]) -> list[str]:
    """``.venv/bin/hybrid-qiskit`` / ``$(BIN)/python`` -> this interpreter on this checkout."""
    head = argv[0].replace("$(BIN)", ".venv/bin")
    if head.endswith("/hybrid-qiskit"):
        return [sys.executable, "-m", "hybrid_qiskit.cli", *argv[1:]]
    if head.endswith("/python"):
        return [sys.executable, *argv[1:]]
    return argv


def why_skip(text: str) -> str | None:
    if "save_account" in text or "account save" in text or "ibm_runtime" in text:
        return "needs an IBM Quantum account"
    if "--download" in text:
        return "needs the internet (--download)"
    m = re.search(r"--dataset\s+(\S+)", text) or re.search(r"experiments/((?:mnist|fashion-mnist|cifar10)\S*)\.toml", text)
    if m and m.group(1) not in OFFLINE_DATA:
        return f"needs dataset files that are not here ({m.group(1)}: download them once with --download)"
    if "JOB_ID" in text:
        return "JOB_ID is a placeholder for an id that `submit` prints"
    if text.strip() == "make test":
        return "the test suite (this walkthrough is part of it)"
    return None


def steps(documents: tuple[str, ...] = DOCUMENTS) -> list[Step]:
    out = []
    for text in walkthrough_commands(documents):
        skip = why_skip(text)
        if skip:
            out.append(Step(text, None, skip))
            continue
        argv = shlex.split(text)
        if argv[0] == "make":
            recipe = make_recipe(argv[1])
            if not recipe:
                out.append(Step(text, None, f"no Makefile target {argv[1]!r}"))
                continue
            for line in recipe:
                line = _local(line)
                if argv[1] == "bench":
                    line.append("--quick")
                out.append(Step(text, line))
        else:
            out.append(Step(text, _local(argv)))
    return out


def run(workdir: Path, *, timeout: float = 1800, echo=print) -> list[dict]:
    """Run every step in ``workdir``; one result per step (``rc`` None: skipped)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    if not (workdir / "experiments").exists():
        (workdir / "experiments").symlink_to(ROOT / "experiments")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HYBRID_QISKIT_HOME": str(workdir / "home"), "MPLBACKEND": "Agg"}
    results = []
    for i, step in enumerate(steps()):
        if step.argv is None:
            echo(f"[{i:02d}] skip  {step.text}\n       ({step.skip})")
            results.append({"command": step.text, "rc": None, "skipped": step.skip})
            continue
        log = workdir / "logs" / f"{i:02d}.log"
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            fh.write(f"$ {step.text}\n")
            fh.flush()
            try:
                rc = subprocess.run(step.argv, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        seconds = time.perf_counter() - t0
        status = "ok   " if rc == 0 else f"FAIL ({rc})"
        echo(f"[{i:02d}] {status} {step.text}  ({seconds:.0f}s, log {log})")
        if rc != 0:
            tail = log.read_text().splitlines()[-5:]
            echo("\n".join(f"       | {line}" for line in tail))
        results.append({"command": step.text, "rc": rc, "seconds": seconds, "log": str(log)})
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="show the steps, run nothing")
    p.add_argument("--workdir", type=Path, help="where to run (default: a new temporary folder)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    args = p.parse_args(argv)
    if args.list:
        for i, step in enumerate(steps()):
            print(f"[{i:02d}] {'skip  ' if step.argv is None else 'run   '}{step.text}"
                  + (f"  ({step.skip})" if step.skip else ""))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="readme-walkthrough-"))
    print(f"walking through {', '.join(DOCUMENTS)} in {workdir}", flush=True)
    results = run(workdir, timeout=args.timeout, echo=lambda s: print(s, flush=True))
    failed = [r for r in results if r["rc"] not in (0, None)]
    ran = sum(r["rc"] is not None for r in results)
    print(f"{ran - len(failed)} of {ran} commands succeeded, {len(results) - ran} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
