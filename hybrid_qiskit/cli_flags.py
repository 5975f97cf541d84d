"""Command-line flags shared by ``hybrid_qiskit.cli`` and the feature modules that add their own
subcommands to it (``jobs``: submit): the backend flags, and what they give.

Below the CLI, so that a feature module the CLI loads never imports the CLI back.
"""

from __future__ import annotations

import argparse


def checked(name: str, parse=int):
    """argparse ``type=`` for a flag whose allowed values are the constrained type ``name`` of
    :mod:`hybrid_qiskit.validation` (imported on use, so that --help stays quick)."""

    def convert(text: str):
        from hybrid_qiskit import validation

        return validation.flag_type(getattr(validation, name), parse)(text)

    convert.__name__ = parse.__name__
    return convert


def add_backend_flags(p: argparse.ArgumentParser, *, default_backend: str | None = None) -> None:
    """Flags that choose and configure a backend (shared by every command that runs circuits)."""
    g = p.add_argument_group("backend")
    g.add_argument("--backend", default=default_backend, help="registry name (see `hybrid-qiskit backends`)")
    g.add_argument("--device", help="fake device (fake_fez, fake_miami, ...: hybrid-qiskit backends --devices) or IBM QPU name")
    g.add_argument("--shots", type=checked("PositiveInt"), help="shots per circuit (shot-based backends; exact ones take none)")
    g.add_argument("--optimization-level", type=int, choices=range(4), help="transpiler optimization level")
    g.add_argument("--noise-scale", type=checked("NonNegativeFinite", float), help="multiply the device's error rates (0 = noiseless)")
    g.add_argument("--resilience-level", type=int, choices=range(3), help="IBM runtime error mitigation level")
    g.add_argument("--backend-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="any other backend setting, e.g. depolarizing=0.01 (repeatable)")


def backend_settings_from(args: argparse.Namespace) -> dict:
    """The backend settings given on the command line (None: not given)."""
    from hybrid_qiskit.config import BACKEND_FLAGS, parse_setting

    out = {k: getattr(args, k, None) for k in BACKEND_FLAGS}
    out.update(dict(parse_setting(s) for s in getattr(args, "backend_setting", []) or []))
    return out
