"""Database access: engine, sessions, tables and migrations."""

from service.db.engine import Database, open_database

__all__ = ["Database", "open_database"]
