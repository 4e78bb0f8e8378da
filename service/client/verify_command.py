"""`locker verify BUNDLE --verifier-key KEY`: the offline verifier's command.

Also `locker verify --receipt RECEIPT --verifier-key KEY [--file FILE]` for an upload
receipt, and `locker verify --server URL --verifier-key KEY --state FILE` to watch a
locker's log.

Exit status, the same for every locker command: 0 verified, 1 an integrity check failed,
2 could not check (no such bundle, an unreadable or malformed key, the server unreachable
or refusing); `locker verify` adds 3: a bundle intact but checked only against its own
key. Like `service.client.verifier`, it needs nothing above the core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from service.client.monitor import MonitorResult, check_server
from service.client.uploader import file_sha256
from service.client.verifier import render, to_json, verify_path
from service.core.bundle import Verdict
from service.core.checkpoint import KeyHistory, NoteVerifier, parse_verifier_keys
from service.core.receipt import Receipt, ReceiptFacts, verify_receipt
from service.core.timestamp import load_certificates
from service.errors import Error, KeyUnusable

# What an exit status means, in every command: a cron job or a script can tell
# "something is wrong with the evidence" (1) from "try again or fix the call" (2).
EXIT_VERIFIED, EXIT_FAILED, EXIT_UNCHECKED, EXIT_UNPROVEN = 0, 1, 2, 3
EXIT_HELP = (
    "Exit status: 0 verified against the verifier key given; 1 an integrity check failed; "
    "2 could not check (usage error, missing or unreadable file, unusable key, server "
    "unreachable or refusing); 3 the bundle is intact but its origin unproven: no "
    "--verifier-key was given, so it was checked only against the key inside the bundle."
)
API_KEY_PREFIX = "lk_"  # the locker's API keys; never echoed back in an error


def read_verifier(key: Path) -> NoteVerifier | KeyHistory:
    """The verifier key (or the published key history) in the file `key`, or a one-line
    reason it cannot be used.

    The reason never repeats the file's content, nor a value that looks like an API key
    given where the verifier-key file was expected: either may be a secret.
    """
    shown = shown_path(key)
    try:
        text = key.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise KeyUnusable(f"no verifier-key file {shown}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise KeyUnusable(f"cannot read the verifier-key file {shown}: {reason}") from None
    try:
        return parse_verifier_keys(text)
    except (ValueError, Error):
        raise KeyUnusable(
            f"{shown} holds no verifier key (one line '<name>+<8 hex digits>+<base64 key>', "
            "as GET /v1/custody/verifier-key returns it, or the key history of "
            "GET /v1/custody/key-history)"
        ) from None


def shown_path(path: Path) -> str:
    """A path for an error message; one that looks like an API key is not repeated."""
    if path.name.startswith(API_KEY_PREFIX):
        return (
            f"'{API_KEY_PREFIX}…' (that looks like an API key, not shown: give the API key "
            "with --api-key or LOCKER_API_KEY, and the verifier key's file with --verifier-key)"
        )
    return str(path)


def verify(  # noqa: PLR0913 (typer: one parameter per option)
    bundle: Annotated[Path | None, typer.Argument(help="The bundle zip to verify.")] = None,
    verifier_key: Annotated[
        Path | None,
        typer.Option(
            "--verifier-key",
            help="File with the locker's verifier key, from a trusted source (without it a "
            "bundle proves its integrity, not its origin: exit 3).",
        ),
    ] = None,
    deprecated_key: Annotated[
        Path | None, typer.Option("--key", hidden=True, help="Old name of --verifier-key.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    server: Annotated[
        str | None, typer.Option("--server", help="Monitor this locker's log instead.")
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="With --server: the last checkpoint seen.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="LOCKER_API_KEY", show_envvar=True, help="With --server."),
    ] = None,
    tsa_ca: Annotated[
        list[Path] | None,
        typer.Option(
            "--tsa-ca",
            help="PEM file with a timestamp authority's CA certificate; once per authority.",
        ),
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
    key = verifier_key or deprecated_key
    if server is not None:
        _monitor(server, key, state, api_key, json_out, err)
    if receipt is not None:
        _receipt(receipt, key, file, json_out, err)
    if bundle is None or not bundle.is_file():
        _usage(err, f"no such bundle file: {shown_path(bundle) if bundle else None}")
    key_text = _verifier(key, "a bundle", err).to_text() if key is not None else None
    roots = None
    for ca_file in tsa_ca or ():
        try:
            roots = [*(roots or ()), *load_certificates(ca_file.read_bytes())]
        except (OSError, Error) as exc:
            _usage(err, f"cannot use the certificates in {ca_file}: {exc}")
    verdict = verify_path(bundle, key_text, roots)
    status = bundle_status(verdict)
    if json_out:
        document = json.loads(to_json(verdict))
        typer.echo(_json({**document, "result": _RESULTS[status], "exit_status": status}))
    else:
        render(verdict, Console(highlight=False))
    raise typer.Exit(status)


_RESULTS = {
    EXIT_VERIFIED: "verified",
    EXIT_FAILED: "not verified",
    EXIT_UNPROVEN: "intact, origin unproven",
}


def bundle_status(verdict: Verdict) -> int:
    """0 verified, 1 a finding, 3 intact but checked only against the bundle's own key."""
    if not verdict.ok:
        return EXIT_FAILED
    return EXIT_VERIFIED if verdict.key_source == "given" else EXIT_UNPROVEN


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _monitor(
    server: str,
    key: Path | None,
    state: Path | None,
    api_key: str | None,
    json_out: bool,
    err: Console,
) -> NoReturn:
    if state is None:
        _usage(err, "--server needs --verifier-key and --state")
    verifier = _verifier(key, "--server", err)
    result = check_server(server, verifier, state, api_key=api_key)
    if result.unchecked is not None:
        err.print(f"locker verify: could not check: {result.unchecked}", markup=False)
        raise typer.Exit(EXIT_UNCHECKED)
    if json_out:
        typer.echo(_json(_monitor_document(result)))
    else:
        out = Console(highlight=False, soft_wrap=True)
        for finding in result.findings:
            out.print(f"[red]FINDING[/red] {escape(finding)}")
        if result.ok and result.current is not None:
            previous = result.previous
            since = f" (consistent with saved size {previous.size})" if previous else ""
            out.print(f"[green]checkpoint of size {result.current.size} verified{since}[/green]")
    raise typer.Exit(EXIT_VERIFIED if result.ok else EXIT_FAILED)


def _monitor_document(result: MonitorResult) -> dict[str, Any]:
    current, previous = result.current, result.previous
    return {
        "ok": result.ok,
        "tree_size": current.size if current else None,
        "root_hash": current.root_hash.hex() if current else None,
        "previous_tree_size": previous.size if previous else None,
        "findings": result.findings,
    }


def _verifier(key: Path | None, what: str, err: Console) -> NoteVerifier | KeyHistory:
    if key is None:
        _usage(err, f"{what} needs --verifier-key FILE")
    try:
        return read_verifier(key)
    except KeyUnusable as exc:
        _usage(err, exc.diagnostics())


def _usage(err: Console, message: str) -> NoReturn:
    err.print(f"locker verify: {message}", markup=False)
    raise typer.Exit(EXIT_UNCHECKED)


def _receipt(
    path: Path, key: Path | None, file: Path | None, json_out: bool, err: Console
) -> NoReturn:
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
        if json_out:
            typer.echo(_json(_receipt_document(receipt, file, None, exc.diagnostics())))
        else:
            out.print(f"[red]FINDING[/red] {escape(exc.diagnostics())}")
        raise typer.Exit(EXIT_FAILED) from None
    if json_out:
        typer.echo(_json(_receipt_document(receipt, file, facts, None)))
        raise typer.Exit(EXIT_VERIFIED)
    what = f"{file} (sha256 {receipt.sha256})" if file is not None else f"sha256 {receipt.sha256}"
    out.print(
        f"receipt verified: {what} was logged as {facts.entry['action']} of evidence "
        f"{receipt.evidence_id} at {facts.entry['time']}, entry {receipt.index} of the "
        f"signed checkpoint of size {facts.checkpoint.size}",
        style="green",
        markup=False,
    )
    raise typer.Exit(EXIT_VERIFIED)


def _receipt_document(
    receipt: Receipt, file: Path | None, facts: ReceiptFacts | None, finding: str | None
) -> dict[str, Any]:
    return {
        "ok": facts is not None,
        "evidence_id": receipt.evidence_id,
        "sha256": receipt.sha256,
        "file": str(file) if file is not None else None,
        "index": receipt.index,
        "action": facts.entry["action"] if facts else None,
        "time": facts.entry["time"] if facts else None,
        "tree_size": facts.checkpoint.size if facts else None,
        "findings": [finding] if finding else [],
    }


def register(app: typer.Typer) -> None:
    """Add the `verify` command to the locker's CLI."""
    app.command("verify", epilog=EXIT_HELP)(verify)
