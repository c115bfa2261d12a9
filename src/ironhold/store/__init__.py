"""Persistence engines and their lifecycles."""

from ironhold.store.sql import SqlStore, open_sql_store

__all__ = ["SqlStore", "open_sql_store"]
