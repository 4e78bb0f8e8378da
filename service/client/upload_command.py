"""`locker upload PATH... --server URL --verifier-key KEY`: the investigator's upload command.

PATH is a file or a folder (every file in it, recursively, in name order); several may
be given, and then a summary table ends the run. The API key comes from LOCKER_API_KEY
(or --api-key, which other users of the machine may see in the process list); it is
checked once, before any file is hashed or sent. Uploads go over tus and resume where
the server stopped: after a broken connection, and in the next run of the same upload
if this one was stopped (`service.client.resume_state`). A receipt is never overwritten.

Exit status, as for every locker command: 0 every file uploaded and its receipt
verified, 1 a receipt does not verify (the server's answer does not prove the file was
logged), 2 a file could not be checked (refused, unreachable or a usage error). Needs
nothing above the core, like `locker verify`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from service.client.uploader import (
    Uploaded,
    UploadError,
    check_credentials,
    file_sha256,
    server_base,
    upload,
)
from service.client.verify_command import (
    EXIT_FAILED,
    EXIT_UNCHECKED,
    read_verifier,
    shown_path,
)
from service.core.checkpoint import KeyHistory, NoteVerifier
from service.errors import KeyUnusable, VerificationError

EXIT_HELP = (
    "Exit status: 0 every file uploaded and its receipt verified; 1 a receipt does not "
    "verify (the server's answer does not prove the file was logged); 2 refused, "
    "unreachable or a usage error."
)


@dataclass(slots=True, kw_only=True)
class _Outcome:
    """One file's result: its receipt, or why there is none."""

    file: Path
    size: int
    sha256: str = ""
    done: Uploaded | None = None
    receipt: Path | None = None
    failure: str | None = None
    unverified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """What every file of one run shares."""

    base: str
    api_key: str
    verifier: NoteVerifier | KeyHistory
    metadata: dict[str, Any] | None
    retries: int
    receipt: Path | None
    receipt_dir: Path


def upload_command(  # noqa: PLR0913 (typer: one parameter per option)
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to upload.")],
    server: Annotated[str, typer.Option("--server", help="The locker's address.")],
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key", envvar="LOCKER_API_KEY", show_envvar=True, help="Your API key (lk_…)."
        ),
    ],
    verifier_key: Annotated[
        Path | None,
        typer.Option(
            "--verifier-key",
            help="File with the locker's verifier key, from a trusted source: each receipt "
            "is checked against it.",
        ),
    ] = None,
    deprecated_key: Annotated[
        Path | None, typer.Option("--key", hidden=True, help="Old name of --verifier-key.")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option("--metadata", help='JSON object, e.g. {"title": "…", "incident_id": "…"}.'),
    ] = None,
    incident: Annotated[
        str | None, typer.Option("--incident", help="Link every file to this incident (its id).")
    ] = None,
    receipt_path: Annotated[
        Path | None,
        typer.Option(
            "--receipt", help="Where to save the receipt of a single file (never overwritten)."
        ),
    ] = None,
    receipt_dir: Annotated[
        Path,
        typer.Option(
            "--receipt-dir", help="Where receipts go as <evidence id>.receipt.json (default: here)."
        ),
    ] = Path(),
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Tries again after a broken connection, afresh whenever the upload moves on.",
        ),
    ] = 5,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON (no progress bars).")
    ] = False,
) -> None:
    """Upload files with their SHA-256 over a resumable connection, then check the log's
    proof that each was received."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    files = _files(paths, err)
    run = _prepare(
        err,
        files=files,
        server=server,
        api_key=api_key,
        key=verifier_key or deprecated_key,
        metadata=_metadata(metadata, incident, err),
        retries=retries,
        receipt=receipt_path,
        receipt_dir=receipt_dir,
    )
    quiet = json_out or not sys.stderr.isatty()
    outcomes = [_one(run, file, err, quiet=quiet) for file in files]
    if json_out:
        documents = [_document(o) for o in outcomes]
        shown = documents[0] if len(paths) == 1 and paths[0].is_file() else documents
        typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))
    elif len(outcomes) == 1 and paths[0].is_file():
        _print_one(outcomes[0], err)
    else:
        _print_table(outcomes)
    if any(o.unverified for o in outcomes):
        raise typer.Exit(EXIT_FAILED)
    if any(o.failure for o in outcomes):
        raise typer.Exit(EXIT_UNCHECKED)


def _files(paths: list[Path], err: Console) -> list[Path]:
    """Every file named, folders expanded (recursively, in name order), each once."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            _usage(err, f"no such file: {shown_path(path)}")
    unique = list(dict.fromkeys(f.resolve() for f in files))
    if not unique:
        _usage(err, "no files to upload")
    return unique


def _prepare(  # noqa: PLR0913 (keyword-only parts of one run)
    err: Console,
    *,
    files: list[Path],
    server: str,
    api_key: str,
    key: Path | None,
    metadata: dict[str, Any] | None,
    retries: int,
    receipt: Path | None,
    receipt_dir: Path,
) -> _Run:
    """Everything checked before the first byte: options, receipts, the server, the key."""
    if key is None:
        _usage(err, "needs --verifier-key FILE (the locker's verifier key, from a trusted source)")
    try:
        verifier = read_verifier(key)
    except KeyUnusable as exc:
        _usage(err, exc.diagnostics())
    if receipt is not None and len(files) > 1:
        _usage(err, "--receipt names one receipt; for several files use --receipt-dir")
    if receipt is not None and receipt.exists():
        _usage(err, f"{shown_path(receipt)} exists; a receipt is never overwritten")
    if not receipt_dir.is_dir():
        _usage(err, f"--receipt-dir {shown_path(receipt_dir)} is not a folder")
    try:
        base = server_base(server)
        check_credentials(base, api_key)
    except UploadError as exc:
        _usage(err, exc.diagnostics())
    return _Run(
        base=base,
        api_key=api_key,
        verifier=verifier,
        metadata=metadata,
        retries=retries,
        receipt=receipt,
        receipt_dir=receipt_dir,
    )


def _one(run: _Run, file: Path, err: Console, *, quiet: bool) -> _Outcome:
    """Hash, send and prove one file; save its receipt."""
    outcome = _Outcome(file=file, size=file.stat().st_size)
    with Progress(
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=quiet,
    ) as bars:
        hashing = bars.add_task(f"hashing {file.name}", total=outcome.size)
        outcome.sha256 = file_sha256(file, lambda n: bars.advance(hashing, n))
        sending = bars.add_task(f"sending {file.name}", total=outcome.size)

        def retrying(reason: str, wait: float) -> None:
            bars.console.print(
                f"{file.name}: sending failed ({reason}); again in {wait:.0f} s, "
                "from where the server stopped",
                markup=False,
            )

        try:
            outcome.done = upload(
                run.base,
                file,
                api_key=run.api_key,
                verifier=run.verifier,
                metadata=run.metadata,
                sha256=outcome.sha256,
                retries=run.retries,
                progress=lambda position: bars.update(sending, completed=position),
                on_retry=retrying,
                key_checked=True,
            )
        except UploadError as exc:
            outcome.failure = exc.diagnostics()
            err.print(f"locker upload: {file.name}: {outcome.failure}", markup=False)
            return outcome
        except VerificationError as exc:
            outcome.failure, outcome.unverified = exc.diagnostics(), True
            err.print(f"[red]RECEIPT DOES NOT VERIFY[/red] {escape(exc.diagnostics())}")
            return outcome
    _save_receipt(run, outcome, outcome.done, err)
    return outcome


def _save_receipt(run: _Run, outcome: _Outcome, done: Uploaded, err: Console) -> None:
    """Write the receipt to a file that did not exist (a second receipt of the same item
    gets the entry's index in its name)."""
    receipt = done.receipt
    candidates = (
        [run.receipt]
        if run.receipt is not None
        else [
            run.receipt_dir / f"{receipt.evidence_id}.receipt.json",
            run.receipt_dir / f"{receipt.evidence_id}.{receipt.index}.receipt.json",
        ]
    )
    for target in candidates:
        try:
            with target.open("x", encoding="utf-8") as handle:
                handle.write(receipt.to_json())
        except FileExistsError:
            continue
        outcome.receipt = target
        return
    outcome.failure = f"uploaded, but {shown_path(candidates[-1])} exists: receipt not saved"
    err.print(f"locker upload: {outcome.failure}", markup=False)


def _document(outcome: _Outcome) -> dict[str, Any]:
    done = outcome.done
    document: dict[str, Any] = {
        "file": str(outcome.file),
        "sha256": outcome.sha256 or None,
        "size": outcome.size,
    }
    if done is not None:
        document |= {
            "evidence_id": done.receipt.evidence_id,
            "duplicate": bool(done.answer.get("duplicate")),
            "custody_index": done.receipt.index,
            "tree_size": done.facts.checkpoint.size,
        }
    document["receipt"] = str(outcome.receipt) if outcome.receipt else None
    if outcome.failure:
        document["error"] = outcome.failure
    return document


def _print_one(outcome: _Outcome, err: Console) -> None:
    done = outcome.done
    if done is None or outcome.receipt is None:
        return
    out = Console(highlight=False, soft_wrap=True)
    kind = "already held; recorded again" if done.answer.get("duplicate") else "stored"
    out.print(f"evidence {done.receipt.evidence_id} ({kind})", markup=False)
    out.print(f"sha256 {outcome.sha256}, {outcome.size} bytes", markup=False)
    out.print(
        f"[green]logged as entry {done.receipt.index}, proven in the signed checkpoint of "
        f"size {done.facts.checkpoint.size}[/green]"
    )
    out.print(f"receipt saved to {shown_path(outcome.receipt)}", markup=False)


def _print_table(outcomes: list[_Outcome]) -> None:
    table = Table("file", "bytes", "evidence", "entry", "outcome", "receipt")
    for o in outcomes:
        done = o.done
        if o.failure or done is None:
            verdict = f"[red]{'NOT VERIFIED' if o.unverified else 'FAILED'}[/red]: "
            table.add_row(o.file.name, str(o.size), "", "", verdict + escape(o.failure or ""), "")
            continue
        kind = "already held" if done.answer.get("duplicate") else "stored"
        receipt = shown_path(o.receipt) if o.receipt else ""
        table.add_row(
            escape(o.file.name),
            str(o.size),
            done.receipt.evidence_id,
            str(done.receipt.index),
            f"[green]{kind}, proven[/green]",
            escape(receipt),
        )
    out = Console(highlight=False, soft_wrap=True, width=200)
    out.print(table)
    good = sum(1 for o in outcomes if not o.failure)
    out.print(f"{good} of {len(outcomes)} files uploaded and proven", markup=False)


def _metadata(text: str | None, incident: str | None, err: Console) -> dict[str, Any] | None:
    value: dict[str, Any] | None = None
    if text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            _usage(err, "--metadata is not valid JSON")
        if not isinstance(parsed, dict):
            _usage(err, "--metadata must be a JSON object")
        value = parsed
    if incident is None:
        return value
    if value is not None and value.get("incident_id") not in (None, incident):
        _usage(err, "--incident and --metadata name different incidents")
    return (value or {}) | {"incident_id": incident}


def _usage(err: Console, message: str) -> NoReturn:
    err.print(f"locker upload: {message}", markup=False)
    raise typer.Exit(EXIT_UNCHECKED)


def register(app: typer.Typer) -> None:
    """Add the `upload` command to the locker's CLI."""
    app.command("upload", epilog=EXIT_HELP)(upload_command)
