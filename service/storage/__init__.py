"""Object storage: one contract (`ObjectStore`), a filesystem and an S3 backend."""

from service.storage.base import (
    MAX_PIECES,
    ObjectStore,
    Piece,
    StagedObject,
    StoredObject,
    UnfinishedWrite,
)
from service.storage.filesystem import FilesystemStore
from service.storage.s3 import S3Store

__all__ = [
    "MAX_PIECES",
    "FilesystemStore",
    "ObjectStore",
    "Piece",
    "S3Store",
    "StagedObject",
    "StoredObject",
    "UnfinishedWrite",
]
