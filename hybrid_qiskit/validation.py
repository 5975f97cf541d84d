"""Allowed values of every setting, declared once and checked by pydantic wherever a value comes
from: a CLI flag (argparse ``type=``), a TOML override file, or a run's saved ``config.json``.

The constrained types below annotate :class:`~hybrid_qiskit.config.TrainConfig`'s fields (a
pydantic dataclass, so every construction and ``dataclasses.replace`` is checked) and the flags of
commands that take the same kind of value (``evaluate --limit``, ``--shots`` of any command).
A bad value becomes ONE line naming the setting, the value and what is allowed:

    >>> try:
    ...     validate(PositiveInt, 0, setting="batch_size")
    ... except HybridQiskitError as exc:
    ...     print(exc)
    batch_size = 0 is not allowed: must be an integer >= 1
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from hybrid_qiskit.errors import HybridQiskitError

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (np.random.seed) takes 0..2**32-1


# File systems take names of at most 255 bytes (ext4, XFS, APFS, NTFS in UTF-16 units); run
# folders get files and suffixes beside them, so names keep a margin.
MAX_FOLDER_NAME_BYTES = 200


def check_folder_name(text: str) -> str:
    """A run or sweep name is one folder inside its parent: no separators, no '..', no control
    characters (a newline makes a folder no listing shows plainly), not empty, not too long."""
    if not text or text.strip() != text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise ValueError("must be a single folder name (no '/', '\\', '..' or surrounding spaces)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("must not contain control characters (newlines, tabs)")
    if len(text.encode()) > MAX_FOLDER_NAME_BYTES:
        raise ValueError(f"is {len(text.encode())} bytes long; a folder name takes at most {MAX_FOLDER_NAME_BYTES}")
    return text


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
OptimizationLevel = Annotated[int, Field(ge=0, le=3)]
ResilienceLevel = Annotated[int, Field(ge=0, le=2)]
FolderName = Annotated[str, AfterValidator(check_folder_name)]


# --------------------------------------------------------------------------- messages


def _bounds(meta: list[Any]) -> tuple[list[str], bool]:
    """(["> 0", "<= 3"], finite) from pydantic/annotated-types metadata."""
    out, finite = [], False
    for m in meta:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
        finite = finite or getattr(m, "allow_inf_nan", True) is False
        inner, inner_finite = _bounds(getattr(m, "metadata", []))  # a FieldInfo carries its own list
        out, finite = out + inner, finite or inner_finite
    return out, finite


def allowed(annotation: Any) -> str:
    """What a type annotation allows, in words: 'an integer in 0..3', 'a finite number > 0'."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    meta: list[Any] = []
    if typing.get_origin(annotation) is Annotated:
        annotation, *meta = typing.get_args(annotation)
    bounds, finite = _bounds(meta)
    base = typing.get_origin(annotation) or annotation
    noun = {int: "an integer", float: "a finite number" if finite else "a number", str: "a string",
            bool: "true or false", dict: "a table of key = value"}.get(base, getattr(base, "__name__", str(base)))
    if base is int and len(bounds) == 2 and bounds[0].startswith(">=") and bounds[1].startswith("<="):
        text = f"{noun} in {bounds[0][3:]}..{bounds[1][3:]}"
    else:
        text = " ".join([noun, " and ".join(bounds)]).strip()
    if any(getattr(m, "func", None) is check_folder_name for m in meta):
        text = (f"a single folder name (no '/', '\\', '..' or control characters, at most "
                f"{MAX_FOLDER_NAME_BYTES} bytes)")
    return f"{text} (or unset)" if optional else text


def explain(exc: ValidationError, *, source: str = "", annotations: dict[str, Any] | None = None,
            flags: dict[str, str] | None = None) -> str:
    """One line for the first error of ``exc`` (a model's fields): the setting, its bad value and
    what is allowed.

    Args:
        source: where the values came from ("in config file X.toml"), placed after the value.
        annotations: field name -> annotation, to state the allowed range in full.
        flags: field name -> its flag ("--batch-size"), named beside the setting.
    """
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    field = loc[0] if loc else ""
    label = ".".join(loc) or "value"
    if (flags or {}).get(field):
        label = f"{label} ({flags[field]})"
    where = f" {source}" if source else ""
    if err["type"] == "missing":
        return f"{label} is missing{where}"
    annotation = (annotations or {}).get(field)
    if annotation is not None and len(loc) == 1:
        rule = f"must be {allowed(annotation)}"
    else:
        rule = err["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    return f"{label} = {_show(err.get('input'))}{where} is not allowed: {rule}"


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- flags


def flag_type(annotation: Any, parse: Callable[[str], Any] = int) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses the text and checks it against ``annotation``; a bad
    value is argparse's error, whose message names the flag (``argument --shots: ...``)."""
    adapter = TypeAdapter(annotation)
    noun = "an integer" if parse is int else "a number"

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; must be {allowed(annotation)}") from None
        try:
            return adapter.validate_python(value)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"{text} is not allowed: must be {allowed(annotation)}") from None

    convert.__name__ = "int" if parse is int else "float"  # argparse names the type in messages
    return convert


def validate(annotation: Any, value: Any, *, setting: str, source: str = "") -> Any:
    """``value`` checked against ``annotation``, or a HybridQiskitError naming ``setting``."""
    try:
        return TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        where = f" {source}" if source else ""
        raise HybridQiskitError(
            f"{setting} = {_show(value)}{where} is not allowed: must be {allowed(annotation)}"
        ) from None
