"""Database access: engine, sessions, tables and migrations."""

from service.db.engine import Database, after_commit, open_database, rerun_if_raced

__all__ = ["Database", "after_commit", "open_database", "rerun_if_raced"]
