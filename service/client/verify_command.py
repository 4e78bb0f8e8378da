"""`locker verify BUNDLE --key KEY`: the offline verifier's command.

Also `locker verify --receipt RECEIPT --key KEY [--file FILE]` for an upload receipt,
and `locker verify --server URL` to watch a locker's log.

Exit status: 0 verified, 1 an integrity check failed, 2 a usage error (no such bundle,
unreadable or malformed key). Like `service.client.verifier`, it needs nothing above the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from service.client.monitor import check_server
from service.client.uploader import file_sha256
from service.client.verifier import render, to_json, verify_path
from service.core.checkpoint import NoteVerifier
from service.core.receipt import Receipt, verify_receipt
from service.core.timestamp import load_certificates
from service.errors import Error

EXIT_VERIFIED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class KeyUnusable(Exception):
    """The key file cannot be read or holds no verifier key (a usage error)."""


def read_verifier(key: Path) -> NoteVerifier:
    """The verifier key in the file `key`, or a one-line reason it cannot be used."""
    try:
        return NoteVerifier.from_text(key.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError, ValueError, Error) as exc:
        raise KeyUnusable(f"cannot use the key in {key}: {exc}") from None


def verify(  # noqa: PLR0913 (typer: one parameter per option)
    bundle: Annotated[Path | None, typer.Argument(help="The bundle zip to verify.")] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="File with the locker's verifier key, from a trusted source."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    server: Annotated[
        str | None, typer.Option("--server", help="Monitor this locker's log instead.")
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="With --server: the last checkpoint seen.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="LOCKER_API_KEY", help="With --server.")
    ] = None,
    tsa_ca: Annotated[
        Path | None,
        typer.Option("--tsa-ca", help="PEM file with the timestamp authority's CA certificate."),
    ] = None,
    receipt: Annotated[
        Path | None,
        typer.Option("--receipt", help="Verify this upload receipt instead of a bundle."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="With --receipt: the file it should be for.")
    ] = None,
) -> None:
    """Verify an evidence bundle or an upload receipt offline, or (--server) that a
    locker's log only grows."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if server is not None:
        _monitor(server, key, state, api_key, err)
    if receipt is not None:
        _receipt(receipt, key, file, err)
    if bundle is None or not bundle.is_file():
        _usage(err, f"no such bundle file: {bundle}")
    key_text = _verifier(key, "--key", err).to_text() if key is not None else None
    roots = None
    if tsa_ca is not None:
        try:
            roots = load_certificates(tsa_ca.read_bytes())
        except (OSError, Error) as exc:
            _usage(err, f"cannot use the certificates in {tsa_ca}: {exc}")
    verdict = verify_path(bundle, key_text, roots)
    if json_out:
        typer.echo(to_json(verdict))
    else:
        render(verdict, Console(highlight=False))
    raise typer.Exit(EXIT_VERIFIED if verdict.ok else EXIT_FAILED)


def _monitor(
    server: str, key: Path | None, state: Path | None, api_key: str | None, err: Console
) -> None:
    if state is None:
        _usage(err, "--server needs --key and --state")
    verifier = _verifier(key, "--server", err)
    result = check_server(server, verifier, state, api_key=api_key)
    out = Console(highlight=False, soft_wrap=True)
    for finding in result.findings:
        out.print(f"[red]FINDING[/red] {escape(finding)}")
    if result.ok and result.current is not None:
        since = f" (consistent with saved size {result.previous.size})" if result.previous else ""
        out.print(f"[green]checkpoint of size {result.current.size} verified{since}[/green]")
    raise typer.Exit(EXIT_VERIFIED if result.ok else EXIT_FAILED)


def _verifier(key: Path | None, option: str, err: Console) -> NoteVerifier:
    if key is None:
        _usage(err, f"{option} needs --key")
    try:
        return read_verifier(key)
    except KeyUnusable as exc:
        _usage(err, str(exc))


def _usage(err: Console, message: str) -> NoReturn:
    err.print(f"locker verify: {message}", markup=False)
    raise typer.Exit(EXIT_USAGE)


def _receipt(path: Path, key: Path | None, file: Path | None, err: Console) -> NoReturn:
    verifier = _verifier(key, "--receipt", err)
    try:
        receipt = Receipt.from_json(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _usage(err, f"cannot read the receipt {path}: {exc}")
    except Error as exc:
        _usage(err, f"{path} is not a receipt: {exc.diagnostics()}")
    try:
        content = file_sha256(file) if file is not None else None
    except OSError as exc:
        _usage(err, f"cannot read {file}: {exc}")
    out = Console(highlight=False, soft_wrap=True)
    try:
        facts = verify_receipt(receipt, verifier, content_sha256=content)
    except Error as exc:
        out.print(f"[red]FINDING[/red] {escape(exc.diagnostics())}")
        raise typer.Exit(EXIT_FAILED) from None
    what = f"{file} (sha256 {receipt.sha256})" if file is not None else f"sha256 {receipt.sha256}"
    out.print(
        f"receipt verified: {what} was logged as {facts.entry['action']} of evidence "
        f"{receipt.evidence_id} at {facts.entry['time']}, entry {receipt.index} of the "
        f"signed checkpoint of size {facts.checkpoint.size}",
        style="green",
        markup=False,
    )
    raise typer.Exit(EXIT_VERIFIED)


def register(app: typer.Typer) -> None:
    """Add the `verify` command to the locker's CLI."""
    app.command("verify")(verify)
