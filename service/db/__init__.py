"""Database access: engine, sessions, tables and migrations."""

from service.db.engine import Database, open_database, rerun_if_raced

__all__ = ["Database", "open_database", "rerun_if_raced"]
