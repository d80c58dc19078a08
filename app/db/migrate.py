"""Programmatic Alembic: upgrade/downgrade the schema from sync code, whatever the current directory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str, *, schema: str | None = None) -> Config:
    """An Alembic Config pointing at migrations/ by absolute path and at `database_url`.

    `schema` (PostgreSQL only) is passed to migrations/env.py, which puts it on the search_path.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation would eat a '%' in a URL-encoded password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade_database(database_url: str, *, schema: str | None = None) -> None:
    """Apply every migration up to head; call it with no event loop running in this thread."""
    command.upgrade(alembic_config(database_url, schema=schema), "head")


def downgrade_database(
    database_url: str, revision: str = "base", *, schema: str | None = None
) -> None:
    """Revert migrations down to `revision`; call it with no event loop running in this thread."""
    command.downgrade(alembic_config(database_url, schema=schema), revision)
