"""Wiring: the database, the object store and the custody log, built from settings.

The HTTP app and the CLI both build one Runtime and hand it to the same use cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy.exc import InterfaceError, OperationalError

from service.core.timestamp import authority_name, load_certificates
from service.custody import CustodyLog, open_signer
from service.custody.rotation import co_signers, finish_rotation
from service.db import Database, open_database
from service.documentation.vocabulary import DEFAULT_CATEGORIES, load_vocabulary
from service.errors import ConfigurationError, FormatError
from service.operations.readiness import database_failure
from service.settings import Settings
from service.storage import FilesystemStore, ObjectStore, S3Store

if TYPE_CHECKING:
    from service.accounts.oidc import OidcVerifier


@dataclass(frozen=True, slots=True, kw_only=True)
class TsaAuthority:
    """One time-stamping authority: where to ask, and the CA its tokens must chain to."""

    name: str  # for logs and bundle file names; see core.timestamp.authority_name
    url: str
    ca_pem: bytes
    roots: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tsa:
    """The authorities every checkpoint is sent to, first the primary, and how to ask."""

    authorities: tuple[TsaAuthority, ...]
    timeout: float
    interval: float
    # Per authority name, the monotonic time before which one that just failed is left to
    # the background retries: an export does not wait for an authority known to be down.
    resting_until: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # in a row, per authority name

    def authority(self, url: str) -> TsaAuthority | None:
        """The configured authority at `url`, if it still is one."""
        return next((a for a in self.authorities if a.url == url), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Everything a use case needs, opened once per process."""

    settings: Settings
    database: Database
    store: ObjectStore
    log: CustodyLog
    oidc: OidcVerifier | None = None
    tsa: Tsa | None = None
    vocabulary: frozenset[str] = frozenset(DEFAULT_CATEGORIES)

    def retain_until(self) -> datetime:
        """The Object Lock date for an object stored now."""
        return datetime.now(UTC) + timedelta(days=self.settings.retention_days)

    def close(self) -> None:
        self.log.close()
        self.database.dispose()


def open_store(settings: Settings) -> ObjectStore:
    """The S3 store when an endpoint is configured, else the filesystem store."""
    if settings.s3_endpoint is None:
        return FilesystemStore(settings.data_dir / "store")
    assert settings.s3_access_key is not None and settings.s3_secret_key is not None
    store = S3Store(
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        bucket=settings.s3_bucket,
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    store.ensure_bucket()
    store.verify_lock()
    return store


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Open the database (migrating it), the object store and the log key."""
    _private_directory(settings.data_dir)
    vocabulary = load_vocabulary(settings.vocabulary_file)
    database = open_database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout,
    )
    try:
        _check_database(database, migrate=migrate)
        tsa = open_tsa(settings)
        store = open_store(settings)
        key_file, origin = settings.effective_signing_key_file, settings.log_origin
        finish_rotation(database, key_file, name=origin)
        signer = open_signer(database, key_file, name=origin)
        cosigners = co_signers(database, key_file, name=origin)
    except BaseException:
        database.dispose()
        raise
    log = CustodyLog(signer=signer, origin=settings.log_origin, co_signers=cosigners)
    if database.engine.dialect.name == "postgresql":
        # Every process stands ready to integrate: entries committed just before a crash
        # enter the tree when any locker runs again, not only at the next append.
        log.sequencer(database.engine)
    return Runtime(
        settings=settings,
        database=database,
        store=store,
        log=log,
        oidc=open_oidc(settings),
        tsa=tsa,
        vocabulary=vocabulary,
    )


def _check_database(database: Database, *, migrate: bool) -> None:
    """Refuse an unsafe database; an unreachable one is a configuration error too, in one
    line (a replica started without its database must say so, not look like a bug)."""
    try:
        database.check_durability()
        if migrate:
            database.migrate()
    except (OperationalError, InterfaceError) as exc:
        raise ConfigurationError(
            f"LOCKER_DATABASE_URL: cannot use the database: {database_failure(exc)}"
        ) from None


def _private_directory(directory: Path) -> None:
    """The data directory, owner-only (0700) whatever the umask: it holds the log key,
    and with the embedded defaults the database and every object."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise ConfigurationError(f"LOCKER_DATA_DIR {directory}: {exc.strerror}") from None


def open_tsa(settings: Settings) -> Tsa | None:
    """The TSAs with their CA certificates read, when LOCKER_TSA_URL is set."""
    if not settings.tsa_urls:
        return None
    authorities = []
    for url, ca_file in zip(settings.tsa_urls, settings.tsa_ca_files, strict=True):
        try:
            pem = ca_file.read_bytes()
            roots = tuple(load_certificates(pem))
        except (OSError, FormatError) as exc:
            raise ConfigurationError(f"LOCKER_TSA_CA_FILE {ca_file}: {exc}") from None
        authorities.append(TsaAuthority(name=authority_name(url), url=url, ca_pem=pem, roots=roots))
    return Tsa(
        authorities=tuple(authorities),
        timeout=settings.tsa_timeout,
        interval=settings.tsa_interval,
    )


def open_oidc(settings: Settings) -> OidcVerifier | None:
    """The bearer-token verifier, when an identity provider is configured."""
    if not (settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url):
        return None
    from service.accounts.oidc import OidcConfig, OidcVerifier  # only with an identity provider

    return OidcVerifier(
        OidcConfig(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            organisation_claim=settings.oidc_organisation_claim,
            role_claim=settings.oidc_role_claim,
            email_claim=settings.oidc_email_claim,
        )
    )
