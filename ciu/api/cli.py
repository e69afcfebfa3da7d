"""``ciu serve`` and ``ciu keys``: run the API and manage its keys."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

keys_app = typer.Typer(no_args_is_help=True, help="API keys (stored hashed) and their roles.")


def _api_store():
    import psycopg

    from ciu.db import database_url
    from ciu.migrate import migrate
    from ciu.store import ApiStore

    conn = psycopg.connect(database_url(), autocommit=True)
    migrate(conn)
    return ApiStore(conn)


def serve(
    host: Annotated[Optional[str], typer.Option(help="interface (default CIU_API_HOST or 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default CIU_API_PORT or 8000)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="worker processes (default CIU_API_WORKERS or 1)")] = None,
) -> None:
    """Serve the prediction API with uvicorn."""
    import os

    import uvicorn

    from ciu.api.settings import ApiSettings
    from ciu.db import database_url

    settings = ApiSettings()
    url = database_url()  # starts the embedded cluster when no URL is set
    os.environ.setdefault("CIU_DATABASE_URL", url)
    store = _api_store()
    store.conn.close()
    host = host or settings.host
    port = port or settings.port
    typer.echo(f"CIU Twin API on http://{host}:{port}/ (docs: http://{host}:{port}/docs)")
    uvicorn.run("ciu.api.app:create_app", factory=True, host=host, port=port, workers=workers or settings.workers,
                log_level="warning", access_log=False)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="public, viewer, operator, finance, security or admin")],
    name: Annotated[str, typer.Option(help="who the key is for")] = "",
) -> None:
    """Make a key; its token is printed once and only its sha256 is stored."""
    store = _api_store()
    try:
        key, token = store.create_key(name=name or f"{role} key", role=role)
    finally:
        store.conn.close()
    typer.echo(f"key #{key.id} ({key.name}, role {key.role}):")
    typer.echo(token)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their tokens)."""
    store = _api_store()
    try:
        for k in store.keys():
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
            typer.echo(f"#{k.id}\t{k.prefix}…\t{k.role}\t{k.name}\t{state}")
    finally:
        store.conn.close()


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="the key's number")]) -> None:
    """Revoke a key (takes effect within CIU_API_KEY_CACHE_S seconds)."""
    store = _api_store()
    try:
        store.revoke_key(key_id)
    finally:
        store.conn.close()
    typer.echo(f"key #{key_id} revoked")
