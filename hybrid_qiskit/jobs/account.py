"""``account save``: save an IBM Quantum account without the API key touching the shell history.

qiskit-ibm-runtime keeps accounts in ``~/.qiskit/qiskit-ibm.json``. Its own recipe,
``python -c "...save_account(token='...')"``, puts the key on a command line, which the shell
writes to its history file. Here the key is read from a prompt that does not echo (``getpass``),
or from a file (``--token-file PATH``, ``-`` for standard input: a password manager's output
piped in), and never appears in ``argv``::

    hybrid-qiskit account save --instance CRN                      # asks for the API key
    pass show ibm/quantum | hybrid-qiskit account save --instance CRN --token-file -

The account is saved on the ``ibm_quantum_platform`` channel (IBM Cloud API key + instance CRN)
as the default one. A saved account on the retired ``ibm_quantum`` channel is what the runtime
refuses with ``InvalidAccountError``; saving a new default (``--overwrite`` replaces one of the
same name) is the way out, and ``ibm_runtime`` says so in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError

CHANNEL = "ibm_quantum_platform"


def read_token(token_file: str | None, *, prompt=None, stdin=None) -> str:
    """The API key from ``token_file`` (``-``: standard input) or, without one, a prompt that
    does not echo. Surrounding whitespace is dropped.

    Raises:
        HybridQiskitError: no file and no terminal to ask on, an unreadable or empty key.
    """
    stdin = stdin or sys.stdin
    if token_file == "-":
        text = stdin.read()
    elif token_file:
        try:
            text = Path(token_file).expanduser().read_text()
        except OSError as exc:
            raise HybridQiskitError(f"--token-file {token_file}: {exc.strerror or exc}") from None
    else:
        if prompt is None:
            if not stdin.isatty():
                raise HybridQiskitError("no terminal to ask for the API key on: pass --token-file PATH "
                                        "(or --token-file - and the key on standard input)")
            from getpass import getpass as prompt
        text = prompt("IBM Quantum API key (not shown): ")
    token = text.strip()
    if not token or len(token.split()) != 1:
        raise HybridQiskitError("the API key is empty or has spaces in it; copy it from quantum.cloud.ibm.com "
                                "(API key) and try again")
    return token


def save(token: str, *, instance: str | None, name: str | None = None, overwrite: bool = False,
         filename: str | None = None) -> str:
    """Save the account as the default one; returns what was saved, in words (never the key).

    Raises:
        HybridQiskitError: the runtime refused it (an account of that name exists without
            ``overwrite``, a malformed instance).
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    try:
        QiskitRuntimeService.save_account(channel=CHANNEL, token=token, instance=instance, name=name,
                                          filename=filename, set_as_default=True, overwrite=overwrite)
    except Exception as exc:  # noqa: BLE001 - the runtime's refusal, as one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "; pass --overwrite to replace it" if "already exists" in text.lower() or "overwrite" in text else ""
        raise HybridQiskitError(f"could not save the account: {text}{hint}") from None
    where = filename or "~/.qiskit/qiskit-ibm.json"
    return (f"saved the IBM Quantum account{f' {name!r}' if name else ''} ({CHANNEL}, instance "
            f"{instance or 'any of the account'}) as the default in {where}")
