"""How many torch threads should a run use? Time digits training epochs at each thread count,
on the machine as it is and with one core kept busy by another process.

    python experiments/bench_threads.py                    # threads 1 and 2, idle and busy, 2 repeats
    python experiments/bench_threads.py --threads 1 2 4 --epochs 3 --repeats 3

Each measurement is a real ``train`` of ``experiments/digits.toml`` (``--epochs`` epochs, in a
temporary folder); the figure is the median epoch time (``history.json``'s ``seconds``: the
training loop only). Thread counts alternate within each repeat, so a burst of load from other
processes hits them alike. "busy" starts one pure-Python spinning process for the duration (the
second core of a 2-core machine taken by someone else). The load average is printed with each row:
on a shared machine it says how idle "idle" was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_qiskit.config import resolve  # noqa: E402
from hybrid_qiskit.training import train  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(Path(__file__).with_name("digits.toml")))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-busy", action="store_true", help="only the machine as it is")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False,) if args.no_busy else (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                times = {t: [] for t in args.threads}
                accuracy = {}
                for r in range(args.repeats):
                    for t in args.threads:
                        cfg = replace(resolve(args.config), epochs=args.epochs, threads=t, out=tmp,
                                      name=f"{'busy' if busy else 'idle'}-t{t}-r{r}")
                        metrics = train(cfg, quiet=True)
                        history = json.loads((Path(tmp) / cfg.name / "history.json").read_text())
                        times[t] += [h["seconds"] for h in history]
                        accuracy[t] = metrics["test_accuracy"]
                for t in args.threads:
                    rows.append({"condition": "one core busy" if busy else "as is", "threads": t,
                                 "median_epoch_s": statistics.median(times[t]), "min_epoch_s": min(times[t]),
                                 "test_accuracy": accuracy[t], "load_average": os.getloadavg()[0]})
                    print(f"{rows[-1]['condition']:<14} threads {t}: epoch median {rows[-1]['median_epoch_s']:.2f} s "
                          f"(min {rows[-1]['min_epoch_s']:.2f} s), test accuracy {accuracy[t]:.4f}, "
                          f"load average {rows[-1]['load_average']:.1f}", flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print(json.dumps({"cpus": os.cpu_count(), "epochs": args.epochs, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
