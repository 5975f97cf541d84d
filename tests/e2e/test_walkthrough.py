"""The README's commands, then the guides', in order: they parse, their run folders do not collide,
and (slow tier) every one runs (experiments/readme_walkthrough.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from hybrid_qiskit.cli import build_parser
from hybrid_qiskit.config import FIELD_NAMES, resolve

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("readme_walkthrough", ROOT / "experiments" / "readme_walkthrough.py")
walkthrough = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = walkthrough  # dataclasses look their module up there
spec.loader.exec_module(walkthrough)


def _cli_steps():
    for step in walkthrough.steps():
        if step.argv and step.argv[:3] == [sys.executable, "-m", "hybrid_qiskit.cli"]:
            yield step, step.argv[3:]


def test_the_readme_has_runnable_commands_and_says_why_others_are_skipped():
    steps = walkthrough.steps()
    assert steps[0].text == "make train"
    ran = [s for s in steps if s.argv]
    assert len(ran) >= 8
    assert any("compare --config experiments/digits.toml --seeds 5" in s.text for s in ran)
    assert all(s.skip for s in steps if s.argv is None)


def test_the_walk_covers_every_guide_in_the_order_the_docs_list_them():
    documents = walkthrough.DOCUMENTS
    assert documents[0] == "README.md"
    guides = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "guides").glob("*.md")}
    assert set(documents[1:]) == guides and len(documents) == len(guides) + 1
    index = (ROOT / "docs" / "index.md").read_text()
    listed = [line.strip() for line in index.splitlines() if line.strip().startswith("guides/")]
    assert [f"docs/{name}.md" for name in listed] == list(documents[1:])
    texts = [s.text for s in walkthrough.steps()]
    assert "make bench" in texts  # from docs/guides/performance.md
    assert texts.index("make train") < texts.index("make bench")  # the README first


def test_every_readme_command_parses():
    for step, argv in _cli_steps():
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: {step.text}")


def test_readme_trainings_in_order_never_meet_an_existing_run():
    # `train` refuses a run folder that already holds a run (unless --resume): in README order,
    # no training may land on a folder an earlier command made.
    made = set()
    for step, argv in _cli_steps():
        args = build_parser().parse_args(argv)
        if args.command != "train":
            continue
        cfg = resolve(args.config, **{k: getattr(args, k) for k in FIELD_NAMES if hasattr(args, k)})
        folder = (cfg.out, cfg.run_name())
        assert args.resume or folder not in made, f"{step.text}: {'/'.join(folder)} was made by an earlier command"
        made.add(folder)


@pytest.mark.slow
def test_every_readme_command_succeeds_in_order(tmp_path):
    results = walkthrough.run(tmp_path, echo=print)
    failed = [r for r in results if r["rc"] not in (0, None)]
    assert not failed, "\n".join(f"{r['command']} -> {r['rc']}: {Path(r['log']).read_text()[-800:]}" for r in failed)
