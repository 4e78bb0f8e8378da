"""The `locker` command: serve, administer, audit. Thin: it calls the use cases."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from service.errors import Error
from service.settings import load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evidence locker.")
admin = typer.Typer(no_args_is_help=True, help="Organisations, users and keys.")
app.add_typer(admin, name="admin")
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
    from service.runtime import open_runtime

    open_runtime(load_settings()).close()
    _out.print("database is up to date")


@admin.command()
def bootstrap(
    org: Annotated[str, typer.Option(help="Name of the new organisation.")],
    email: Annotated[str, typer.Option(help="E-mail of its first administrator.")],
) -> None:
    """Create an organisation, its admin user and an API key (printed last, alone)."""
    from service.accounts import bootstrap as do_bootstrap
    from service.runtime import open_runtime

    runtime = open_runtime(load_settings())
    try:
        made = do_bootstrap(runtime, organisation=org, email=email)
    finally:
        runtime.close()
    _out.print(f"organisation {made.organisation_id}\nuser {made.user_id}")
    _out.print("API key (shown once; store it safely):")
    print(made.api_key)


@app.command()
def fsck(
    repair: Annotated[
        bool, typer.Option("--repair", help="Settle pending uploads; record orphan objects.")
    ] = False,
) -> None:
    """Audit every object, leaf, tree node, checkpoint and record; exit 1 on any finding."""
    from service.fsck import fsck as run_fsck
    from service.runtime import open_runtime

    runtime = open_runtime(load_settings())
    try:
        report = run_fsck(runtime, repair=repair)
    finally:
        runtime.close()
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
