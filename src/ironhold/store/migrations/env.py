"""Alembic's environment: Ironhold runs migrations itself (``store.sql.open_sql_store``) on the
connection it passes in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from ironhold.store.sql import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
