"""`locker verify BUNDLE --key KEY`: the offline verifier's command.

Exit status: 0 verified, 1 an integrity check failed, 2 a usage error (no such bundle,
unreadable or malformed key). Like `service.verifier`, it needs nothing above the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.core.checkpoint import NoteVerifier
from service.errors import Error
from service.verifier import render, to_json, verify_path

EXIT_VERIFIED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _read_key(key: Path) -> str:
    """The verifier key text in `key`; Error or OSError if unreadable or malformed."""
    text = key.read_text(encoding="utf-8").strip()
    NoteVerifier.from_text(text)  # refuse a malformed key as a usage error, up front
    return text


def verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle zip to verify.")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="File with the locker's verifier key, from a trusted source."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Verify an evidence bundle offline: files, manifests, custody proofs and signature."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not bundle.is_file():
        err.print(f"locker verify: no such bundle file: {bundle}", markup=False)
        raise typer.Exit(EXIT_USAGE)
    key_text = None
    if key is not None:
        try:
            key_text = _read_key(key)
        except (OSError, UnicodeDecodeError, ValueError, Error) as exc:
            err.print(f"locker verify: cannot use the key in {key}: {exc}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
    verdict = verify_path(bundle, key_text)
    if json_out:
        typer.echo(to_json(verdict))
    else:
        render(verdict, Console(highlight=False))
    raise typer.Exit(EXIT_VERIFIED if verdict.ok else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the `verify` command to the locker's CLI."""
    app.command("verify")(verify)
