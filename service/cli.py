"""The `locker` command: serve, administer, audit. Thin: it calls the use cases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from service.client.upload_command import register as register_upload
from service.client.verify_command import register as register_verify
from service.errors import Error
from service.settings import load_settings

if TYPE_CHECKING:
    from service.runtime import Runtime

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evidence locker.")
admin = typer.Typer(no_args_is_help=True, help="Organisations, users and keys.")
app.add_typer(admin, name="admin")
register_verify(app)  # `locker verify`: offline, imports only the pure core
register_upload(app)  # `locker upload`: the field client, standard library + core
_err = Console(stderr=True, soft_wrap=True)
_out = Console(highlight=False, soft_wrap=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the HTTP API (embedded SQLite and filesystem store unless configured)."""
    import uvicorn

    from service.app import create_app
    from service.runtime import open_runtime

    settings = load_settings()
    runtime = open_runtime(settings)  # fail here, with one line, on bad configuration
    _err.print(f"locker: serving on http://{host or settings.host}:{port or settings.port}")
    try:
        uvicorn.run(
            create_app(settings, runtime=runtime),
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
        )
    finally:
        runtime.close()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    with _runtime():
        _out.print("database is up to date")


@admin.command()
def bootstrap(
    org: Annotated[str, typer.Option(help="Name of the new organisation.")],
    email: Annotated[str, typer.Option(help="E-mail of its first administrator.")],
) -> None:
    """Create an organisation, its admin user and an API key (printed last, alone)."""
    from service.accounts.members import bootstrap as do_bootstrap

    with _runtime() as runtime:
        made = do_bootstrap(runtime, organisation=org, email=email)
    _out.print(f"organisation {made.organisation_id}\nuser {made.user_id}")
    _out.print("API key (shown once; store it safely):")
    print(made.api_key)


@admin.command("create-user")
def create_user(
    org: Annotated[str, typer.Option(help="Organisation name.")],
    email: Annotated[str, typer.Option(help="The member's e-mail.")],
    role: Annotated[str, typer.Option(help="admin, investigator, analyst or auditor.")],
) -> None:
    """Add a member to an organisation with a role."""
    from service.accounts.members import operator_create_user

    with _runtime() as runtime:
        user = operator_create_user(runtime, organisation=org, email=email, role=role)
    _out.print(f"member {user.id} {user.email} role {user.role}")


@admin.command("create-key")
def create_key(
    org: Annotated[str, typer.Option(help="Organisation name.")],
    email: Annotated[str, typer.Option(help="The member who will own the key.")],
    role: Annotated[str | None, typer.Option(help="Lower than the member's role.")] = None,
    expires: Annotated[int | None, typer.Option(help="Days until the key expires.")] = None,
) -> None:
    """Create an API key for a member (printed last, alone)."""
    from service.accounts.members import operator_create_key

    with _runtime() as runtime:
        issued = operator_create_key(
            runtime, organisation=org, email=email, role=role, expires_days=expires
        )
    _out.print(f"key {issued.row.prefix} role {issued.row.role} (shown once; store it safely):")
    print(issued.secret)


@admin.command("revoke-key")
def revoke_key(prefix: Annotated[str, typer.Argument(help="The key's prefix.")]) -> None:
    """Revoke a key at once."""
    from service.accounts.members import operator_revoke_key

    with _runtime() as runtime:
        row = operator_revoke_key(runtime, prefix)
    _out.print(f"key {row.prefix} revoked at {row.revoked_at:%Y-%m-%dT%H:%M:%SZ}")


@admin.command("list-keys")
def list_keys(org: Annotated[str, typer.Option(help="Organisation name.")]) -> None:
    """Every key of an organisation (never the secrets)."""
    from rich.table import Table

    from service.accounts.members import operator_list_keys

    with _runtime() as runtime:
        rows = operator_list_keys(runtime, organisation=org)
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
    for key, email in rows:
        table.add_row(
            key.prefix,
            email,
            key.role,
            key.name,
            _when(key.created_at),
            _when(key.expires_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
    # Keys must print whole even into a pipe, where rich would assume 80 columns.
    Console(highlight=False, width=None if _out.is_terminal else 240).print(table)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


@contextmanager
def _runtime() -> Iterator[Runtime]:
    from service.runtime import open_runtime

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
) -> None:
    """Audit every object, leaf, tree node, checkpoint and record; exit 1 on any finding."""
    from service.operations.fsck import fsck as run_fsck

    with _runtime() as runtime:
        report = run_fsck(runtime, repair=repair)
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
def timestamp() -> None:
    """Sign a checkpoint over the whole log and get it an RFC 3161 timestamp (LOCKER_TSA_URL)."""
    from service.custody.timestamps import timestamp_latest

    with _runtime() as runtime:
        if runtime.tsa is None:
            _err.print("locker timestamp: LOCKER_TSA_URL is not set", markup=False)
            raise typer.Exit(2)
        token = timestamp_latest(runtime)
    if token is None:
        # An outage, not a failed integrity check: exit 2, as everywhere.
        _out.print("[red]no timestamp: the TSA failed (see the log)[/red]")
        raise typer.Exit(2)
    _out.print(
        f"checkpoint of size {token.checkpoint_size} timestamped at "
        f"{token.attested_at:%Y-%m-%dT%H:%M:%SZ} by {token.authority}",
        markup=False,
    )


@app.command()
def analyse() -> None:
    """Read the metadata and perceptual hashes of every item not yet analysed."""
    from service.evidence.extraction import analyse_evidence, pending_analysis

    with _runtime() as runtime:
        pending = pending_analysis(runtime)
        for evidence_id in pending:
            row = analyse_evidence(runtime, evidence_id)
            outcome = "done" if row is None or row.error is None else f"failed: {row.error}"
            _out.print(f"evidence {evidence_id}: {outcome}", markup=False)
    _out.print(f"analysed {len(pending)} item(s)")


@app.command()
def reindex() -> None:
    """Rebuild the search index of every incident and item (after an upgrade)."""
    from service.search.query import rebuild_search_index

    with _runtime() as runtime:
        done = rebuild_search_index(runtime)
    _out.print(f"reindexed {done.incidents} incident(s) and {done.evidence} item(s)")


@app.command()
def demo() -> None:
    """Fill the locker with a small, self-written sample (an organisation of its own)."""
    from service.operations.demo import DEMO_EMAIL, DEMO_ORGANISATION, load_demo

    with _runtime() as runtime:
        loaded = load_demo(runtime)
    _out.print(
        f"loaded {len(loaded.incidents)} incidents and {len(loaded.evidence)} items into "
        f"{DEMO_ORGANISATION!r} (admin {DEMO_EMAIL})",
        markup=False,
    )
    _out.print("API key (shown once; store it safely):")
    print(loaded.api_key)


def main() -> None:
    """Entry point: run the CLI, printing our errors as one line, not a traceback."""
    try:
        code = app(standalone_mode=False)
    except Error as exc:
        _err.print(f"locker: {exc.diagnostics()}", markup=False)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
    raise SystemExit(code if isinstance(code, int) else 0)
