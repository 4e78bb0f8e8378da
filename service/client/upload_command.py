"""`locker upload FILE --server URL --verifier-key KEY`: the investigator's upload command.

The API key comes from LOCKER_API_KEY (or --api-key, which other users of the machine
may see in the process list).

Exit status, as for every locker command: 0 uploaded and the receipt verified, 1 the
receipt does not verify (the server's answer does not prove the file was logged), 2 could
not check (refused, unreachable or a usage error). Needs nothing above the core, like
`locker verify`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from service.client.uploader import UploadError, file_sha256, upload
from service.client.verify_command import (
    EXIT_FAILED,
    EXIT_UNCHECKED,
    read_verifier,
    shown_path,
)
from service.errors import KeyUnusable, VerificationError

EXIT_HELP = (
    "Exit status: 0 uploaded and the receipt verified; 1 the receipt does not verify (the "
    "server's answer does not prove the file was logged); 2 refused, unreachable or a "
    "usage error."
)


def upload_command(  # noqa: PLR0913, PLR0915 (typer: one parameter per option)
    file: Annotated[Path, typer.Argument(help="The file to upload.")],
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
            help="File with the locker's verifier key, from a trusted source: the receipt "
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
    receipt_path: Annotated[
        Path | None,
        typer.Option(
            "--receipt", help="Where to save the receipt (else <evidence id>.receipt.json here)."
        ),
    ] = None,
    retries: Annotated[int, typer.Option(min=0, help="Tries again after a broken connection.")] = 5,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON (no progress bars).")
    ] = False,
) -> None:
    """Upload a file with its SHA-256, then check the log's proof that it was received."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not file.is_file():
        _usage(err, f"no such file: {shown_path(file)}")
    key = verifier_key or deprecated_key
    if key is None:
        _usage(err, "needs --verifier-key FILE (the locker's verifier key, from a trusted source)")
    try:
        verifier = read_verifier(key)
    except KeyUnusable as exc:
        _usage(err, exc.diagnostics())
    fields = _metadata(metadata, err)
    size = file.stat().st_size
    quiet = json_out or not sys.stderr.isatty()
    with Progress(
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=quiet,
    ) as bars:
        hashing = bars.add_task("hashing", total=size)
        digest = file_sha256(file, lambda n: bars.advance(hashing, n))
        sending = bars.add_task("sending", total=size)

        def sent(n: int) -> None:
            bars.advance(sending, n)

        def retrying(reason: str, wait: float) -> None:
            bars.console.print(f"sending failed ({reason}); again in {wait:.0f} s", markup=False)
            bars.reset(sending)

        try:
            done = upload(
                server,
                file,
                api_key=api_key,
                verifier=verifier,
                metadata=fields,
                sha256=digest,
                retries=retries,
                progress=sent,
                on_retry=retrying,
            )
        except UploadError as exc:
            err.print(f"locker upload: {exc.diagnostics()}", markup=False)
            raise typer.Exit(EXIT_UNCHECKED) from None
        except VerificationError as exc:
            err.print(f"[red]RECEIPT DOES NOT VERIFY[/red] {escape(exc.diagnostics())}")
            raise typer.Exit(EXIT_FAILED) from None
    target = receipt_path or Path(f"{done.receipt.evidence_id}.receipt.json")
    target.write_text(done.receipt.to_json(), encoding="utf-8")
    if json_out:
        document = {
            "evidence_id": done.receipt.evidence_id,
            "duplicate": bool(done.answer.get("duplicate")),
            "sha256": digest,
            "size": size,
            "custody_index": done.receipt.index,
            "tree_size": done.facts.checkpoint.size,
            "receipt": str(target),
        }
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, soft_wrap=True)
    kind = "already held; recorded again" if done.answer.get("duplicate") else "stored"
    out.print(f"evidence {done.receipt.evidence_id} ({kind})", markup=False)
    out.print(f"sha256 {digest}, {size} bytes", markup=False)
    out.print(
        f"[green]logged as entry {done.receipt.index}, proven in the signed checkpoint of "
        f"size {done.facts.checkpoint.size}[/green]"
    )
    out.print(f"receipt saved to {target}", markup=False)


def _metadata(text: str | None, err: Console) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        _usage(err, "--metadata is not valid JSON")
    if not isinstance(value, dict):
        _usage(err, "--metadata must be a JSON object")
    return value


def _usage(err: Console, message: str) -> NoReturn:
    err.print(f"locker upload: {message}", markup=False)
    raise typer.Exit(EXIT_UNCHECKED)


def register(app: typer.Typer) -> None:
    """Add the `upload` command to the locker's CLI."""
    app.command("upload", epilog=EXIT_HELP)(upload_command)
