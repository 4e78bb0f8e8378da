"""The `locker` command: serve, administer, audit. Thin: it calls the use cases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version as _version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from service.client.upload_command import register as register_upload
from service.client.verify_command import register as register_verify
from service.errors import Error
from service.settings import load_settings

if TYPE_CHECKING:
    from service.runtime import Runtime

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Evidence locker.",
    epilog="Exit status: 0 done, 1 a check failed, 2 a usage or reported error, 3 verified "
    "intact but origin unproven (locker verify without --verifier-key), 70 a bug, "
    "130 interrupted.",
)
admin = typer.Typer(no_args_is_help=True, help="Organisations, users and keys.")
app.add_typer(admin, name="admin")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"locker {_version('evidence-locker')}")
        raise typer.Exit(0)


@app.callback()
def _locker(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version; exit."
        ),
    ] = False,
) -> None:
    """Evidence locker: immutable evidence storage and a verifiable chain-of-custody log."""


register_verify(app)  # `locker verify`: offline, imports only the pure core
register_upload(app)  # `locker upload`: the field client, standard library + core
JsonOption = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
NameOption = Annotated[
    str | None,
    typer.Option(help="The member's name as they write it (any script); signed in the log."),
]
_err = Console(stderr=True, soft_wrap=True)
_out = Console(highlight=False, soft_wrap=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the HTTP API (embedded SQLite and filesystem store unless configured)."""
    import uvicorn

    from service.api.server import uvicorn_options
    from service.app import create_app
    from service.logs import route_standard_logging
    from service.runtime import open_runtime

    route_standard_logging()
    settings = load_settings()
    runtime = open_runtime(settings)  # fail here, with one line, on bad configuration
    _err.print(f"locker: serving on http://{host or settings.host}:{port or settings.port}")
    try:
        uvicorn.run(
            create_app(settings, runtime=runtime),
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
            # uvicorn's loggers go to the root handler (JSON, service.logs); the access
            # lines are ours, with the request id (service.api.observability).
            log_config=None,
            access_log=False,
            **uvicorn_options(settings),
        )
    finally:
        runtime.close()


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once.")] = 2,
) -> None:
    """Run jobs (exports, analysis, timestamps) from the PostgreSQL queue until stopped."""
    import asyncio

    from service.errors import ConfigurationError
    from service.jobs.queue import PostgresQueue
    from service.jobs.worker import run_worker
    from service.logs import configure_logging, route_standard_logging

    configure_logging()  # JSON lines, as `locker serve` writes them
    route_standard_logging()  # procrastinate's warnings the same way
    with _runtime() as runtime:
        if runtime.database.engine.dialect.name != "postgresql":
            raise ConfigurationError(
                "locker worker needs PostgreSQL (LOCKER_DATABASE_URL); "
                "on the embedded default `locker serve` runs the jobs itself"
            )
        queue = PostgresQueue(runtime)
        _err.print("locker: worker running; stop it with Ctrl-C")
        try:
            asyncio.run(run_worker(runtime, queue, concurrency=concurrency))
        except KeyboardInterrupt:
            pass
        finally:
            queue.close()


@app.command()
def migrate(json_out: JsonOption = False) -> None:
    """Bring the database schema up to date."""
    with _runtime():
        pass
    if json_out:
        _print_json({"database": "up to date"})
    else:
        _out.print("database is up to date")


@admin.command()
def bootstrap(
    org: Annotated[str, typer.Option(help="Name of the new organisation.")],
    email: Annotated[str, typer.Option(help="E-mail of its first administrator.")],
    name: NameOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create an organisation, its admin user and an API key (printed last, alone)."""
    from service.accounts.members import bootstrap as do_bootstrap

    with _runtime() as runtime:
        made = do_bootstrap(runtime, organisation=org, email=email, name=name)
    if json_out:
        _print_json(
            {"organisation": made.organisation_id, "user": made.user_id, "api_key": made.api_key}
        )
        return
    _out.print(f"organisation {made.organisation_id}\nuser {made.user_id}")
    _out.print("API key (shown once; store it safely):")
    print(made.api_key)


@admin.command("create-user")
def create_user(
    org: Annotated[str, typer.Option(help="Organisation name.")],
    email: Annotated[str, typer.Option(help="The member's e-mail.")],
    role: Annotated[str, typer.Option(help="admin, investigator, analyst or auditor.")],
    name: NameOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add a member to an organisation with a role (and their name)."""
    from service.accounts.members import add_member, operator_of
    from service.accounts.people import person_label

    with _runtime() as runtime:
        operator = operator_of(runtime, organisation=org)
        user = add_member(runtime, operator, email=email, role=role, name=name)
    if json_out:
        _print_json({"member": user.id, "email": user.email, "name": user.name, "role": user.role})
        return
    _out.print(
        f"member {user.id} {person_label(user.email, user.name)} role {user.role}", markup=False
    )


@admin.command("create-key")
def create_key(
    org: Annotated[str, typer.Option(help="Organisation name.")],
    email: Annotated[str, typer.Option(help="The member who will own the key.")],
    name: Annotated[str, typer.Option(help="What the key is for (shown in list-keys).")] = "",
    role: Annotated[str | None, typer.Option(help="Lower than the member's role.")] = None,
    expires: Annotated[int | None, typer.Option(help="Days until the key expires.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Create an API key for a member (printed last, alone)."""
    from service.accounts.members import create_key as do_create_key
    from service.accounts.members import operator_of

    with _runtime() as runtime:
        operator = operator_of(runtime, organisation=org)
        issued = do_create_key(
            runtime, operator, name=name, role=role, expires_days=expires, email=email
        )
    if json_out:
        row = issued.row
        _print_json(
            {
                "prefix": row.prefix,
                "role": row.role,
                "expires": row.expires_at,
                "key": issued.secret,
            }
        )
        return
    _out.print(f"key {issued.row.prefix} role {issued.row.role} (shown once; store it safely):")
    print(issued.secret)


@admin.command("revoke-key")
def revoke_key(
    org: Annotated[str, typer.Option(help="Organisation name.")],
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as list-keys shows it.")],
    json_out: JsonOption = False,
) -> None:
    """Revoke a key at once."""
    from service.accounts.members import operator_of
    from service.accounts.members import revoke_key as do_revoke_key

    with _runtime() as runtime:
        row = do_revoke_key(runtime, operator_of(runtime, organisation=org), prefix)
    if json_out:
        _print_json({"prefix": row.prefix, "revoked_at": row.revoked_at})
        return
    _out.print(f"key {row.prefix} revoked at {row.revoked_at:%Y-%m-%dT%H:%M:%SZ}")


@admin.command("list-keys")
def list_keys(
    org: Annotated[str, typer.Option(help="Organisation name.")], json_out: JsonOption = False
) -> None:
    """Every key of an organisation (never the secrets)."""
    from rich.table import Table

    from service.accounts.members import list_keys as do_list_keys
    from service.accounts.members import list_members, operator_of

    with _runtime() as runtime:
        operator = operator_of(runtime, organisation=org)
        keys = do_list_keys(runtime, operator)
        owners = {user.id: user.email for user in list_members(runtime, operator)}
    if json_out:
        _print_json(
            [
                {
                    "prefix": key.prefix,
                    "owner": owners[key.user_id],
                    "role": key.role,
                    "name": key.name,
                    "created": key.created_at,
                    "expires": key.expires_at,
                    "last_used": key.last_used_at,
                    "revoked": key.revoked_at,
                }
                for key in keys
            ]
        )
        return
    table = Table()
    for heading in (
        "prefix",
        "owner",
        "role",
        "name",
        "created",
        "expires",
        "last used",
        "revoked",
    ):
        table.add_column(heading, no_wrap=True)
    for key in keys:
        table.add_row(
            key.prefix,
            owners[key.user_id],
            key.role,
            key.name,
            _when(key.created_at),
            _when(key.expires_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
    # Keys must print whole even into a pipe, where rich would assume 80 columns.
    Console(highlight=False, width=None if _out.is_terminal else 240).print(table)


@admin.command("rotate-key")
def rotate_key(
    overlap_days: Annotated[
        int, typer.Option(min=0, help="Days checkpoints stay co-signed by the old key.")
    ] = 30,
) -> None:
    """Replace the log's signing key: a log entry the old key signs; prints the new key."""
    from datetime import timedelta

    from service.custody.rotation import rotate_key as do_rotate

    with _runtime() as runtime:
        rotation = do_rotate(runtime, overlap=timedelta(days=overlap_days))
    _out.print(
        f"entry {rotation.index}: the log key is rotated; checkpoints are co-signed by the "
        f"old key until {rotation.overlap_until:%Y-%m-%dT%H:%M:%SZ}",
        markup=False,
    )
    _out.print(
        "Back up the new key file now. Publish the key history (GET /v1/custody/key-history)."
    )
    _out.print("new verifier key:")
    print(rotation.new_key)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


@contextmanager
def _runtime() -> Iterator[Runtime]:
    from service.logs import configure_logging
    from service.runtime import open_runtime

    # Log lines go to stderr: stdout is the command's answer (`--json` must parse).
    configure_logging()
    runtime = open_runtime(load_settings())
    try:
        yield runtime
    finally:
        runtime.close()


@app.command()
def fsck(
    repair: Annotated[
        bool, typer.Option("--repair", help="Settle pending uploads; record orphan objects.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Audit every object, leaf, tree node, checkpoint and record; exit 1 on any finding."""
    from service.operations.fsck import fsck as run_fsck

    with _runtime() as runtime:
        report = run_fsck(runtime, repair=repair)
    if json_out:
        _print_json(
            {
                "healthy": report.healthy,
                "checked": report.checked,
                "findings": report.findings,
                "repairs": report.repairs,
            }
        )
        raise typer.Exit(0 if report.healthy else 1)
    for line in report.repairs:
        _out.print(f"repaired: {line}")
    for what, count in report.checked.items():
        _out.print(f"checked {count} {what}")
    for finding in report.findings:
        _out.print(f"[red]FINDING[/red] {finding}")
    if not report.healthy:
        _out.print(f"[red]{len(report.findings)} finding(s)[/red]")
        raise typer.Exit(1)
    _out.print("[green]all checks passed[/green]")


@app.command()
def timestamp(json_out: JsonOption = False) -> None:
    """Sign a checkpoint over the whole log and get it RFC 3161 timestamps (LOCKER_TSA_URL)."""
    from service.custody.timestamps import timestamp_latest

    with _runtime() as runtime:
        if runtime.tsa is None:
            _err.print("locker timestamp: LOCKER_TSA_URL is not set", markup=False)
            raise typer.Exit(2)
        tokens = timestamp_latest(runtime)
    if json_out:
        _print_json(
            {
                "timestamped": bool(tokens),
                "tokens": [
                    {
                        "checkpoint_size": token.checkpoint_size,
                        "attested_at": token.attested_at,
                        "authority": token.authority,
                        "tsa_url": token.tsa_url,
                    }
                    for token in tokens
                ],
            }
        )
    else:
        for token in tokens:
            _out.print(
                f"checkpoint of size {token.checkpoint_size} timestamped at "
                f"{token.attested_at:%Y-%m-%dT%H:%M:%SZ} by {token.authority} ({token.tsa_url})",
                markup=False,
            )
        if not tokens:
            _out.print("[red]no timestamp: every TSA failed (see the log)[/red]")
    if not tokens:
        raise typer.Exit(2)  # an outage, not a failed integrity check: exit 2, as everywhere


@app.command()
def analyse(json_out: JsonOption = False) -> None:
    """Read the metadata and perceptual hashes of every item not yet analysed."""
    from service.evidence.extraction import analyse_evidence, pending_analysis

    outcomes: dict[str, str] = {}
    with _runtime() as runtime:
        pending = pending_analysis(runtime)
        for evidence_id in pending:
            row = analyse_evidence(runtime, evidence_id)
            outcome = "done" if row is None or row.error is None else f"failed: {row.error}"
            outcomes[evidence_id] = outcome
            if not json_out:
                _out.print(f"evidence {evidence_id}: {outcome}", markup=False)
    if json_out:
        _print_json({"analysed": outcomes})
    else:
        _out.print(f"analysed {len(pending)} item(s)")


@app.command()
def reindex(json_out: JsonOption = False) -> None:
    """Rebuild the search index of every incident and item (after an upgrade)."""
    from service.search.query import rebuild_search_index

    with _runtime() as runtime:
        done = rebuild_search_index(runtime)
    if json_out:
        _print_json({"incidents": done.incidents, "evidence": done.evidence})
        return
    _out.print(f"reindexed {done.incidents} incident(s) and {done.evidence} item(s)")


@app.command()
def demo(
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples",
            help="Only write the walk-through's sample files (photos, a statement) into "
            "this folder; load nothing.",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Fill the locker with a small, self-written sample (an organisation of its own)."""
    from service.operations.demo import DEMO_EMAIL, DEMO_ORGANISATION, load_demo, write_samples

    if samples is not None:
        written = write_samples(samples)
        if json_out:
            _print_json({"samples": [str(path) for path in written]})
        for path in [] if json_out else written:
            print(path)
        return
    with _runtime() as runtime:
        loaded = load_demo(runtime)
    if json_out:
        _print_json(
            {
                "organisation": DEMO_ORGANISATION,
                "email": DEMO_EMAIL,
                "incidents": loaded.incidents,
                "evidence": loaded.evidence,
                "api_key": loaded.api_key,
            }
        )
        return
    _out.print(
        f"loaded {len(loaded.incidents)} incidents and {len(loaded.evidence)} items into "
        f"{DEMO_ORGANISATION!r} (admin {DEMO_EMAIL})",
        markup=False,
    )
    _out.print("API key (shown once; store it safely):")
    print(loaded.api_key)


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, default=_json_value))


def _json_value(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BUG = 0, 1, 2, 130, 70


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: every mistake or error is one line on stderr and an exit status.

    Exit status: 0 done, 1 a check failed (fsck, verify), 2 a usage error or an error the
    locker reports (bad option, missing file, bad configuration, refused request), 3
    `locker verify` found the bundle intact but its origin unproven (no --verifier-key),
    70 a bug in the locker (run with LOCKER_TRACEBACK=1 to see where), 130 interrupted.
    """
    try:
        code = app(args=argv, prog_name="locker", standalone_mode=False)
    except Error as exc:
        _fail(f"locker: {exc.diagnostics()}", EXIT_USAGE)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail("locker: interrupted", EXIT_INTERRUPTED)
    except typer.TyperException as exc:  # click's usage errors, as typer bundles click
        _fail(_usage_line(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("locker: interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        if os.environ.get("LOCKER_TRACEBACK"):
            raise
        _fail(
            f"locker: unexpected {type(exc).__name__}: {exc} (a bug; LOCKER_TRACEBACK=1 "
            "shows where)",
            EXIT_BUG,
        )
    raise SystemExit(code if isinstance(code, int) else EXIT_OK)


def _usage_line(exc: typer.TyperException) -> str:
    """One line: the command, what is wrong, and where help is."""
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else "locker"
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `locker`: its help is shown
        return f"{command}: a command is needed (see {command} --help)"
    message = " ".join(exc.format_message().split())
    return f"{command}: {message} (see {command} --help)"


def _fail(line: str, code: int) -> NoReturn:
    _err.print(line, markup=False, highlight=False)
    raise SystemExit(code)
