"""The locker's configuration: environment variables prefixed LOCKER_.

With nothing set, the locker runs on embedded defaults (SQLite and a filesystem object
store under LOCKER_DATA_DIR). Validators refuse contradictory or unsafe values at start,
with one line naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core.timestamp import authority_name
from service.errors import ConfigurationError

_KEY_NAME_FORBIDDEN = set(" \t\n+")
_LIST_SEPARATORS = re.compile(r"[\s,]+")


def _words(value: str | None) -> tuple[str, ...]:
    """A setting that may list several values, separated by commas or spaces."""
    return tuple(w for w in _LIST_SEPARATORS.split(value or "") if w)


def _path_text(value: object) -> object:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class Settings(BaseSettings):
    """Every setting of the locker, read from LOCKER_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_", extra="ignore", frozen=True)

    data_dir: Path = Path("./locker-data")
    database_url: str | None = None
    # PostgreSQL connections one process keeps (and never exceeds); every process of a
    # deployment needs its share of the server's max_connections.
    database_pool_size: int = Field(default=30, ge=4, le=500)
    # Seconds a request waits for one of them when all are in use, before answering 503.
    database_pool_timeout: float = Field(default=30.0, gt=0, le=300)
    log_origin: str = Field(
        default="evidence-locker.local/custody",
        description="Origin line of checkpoints; unique per deployment (C2SP tlog-checkpoint).",
    )
    signing_key_file: Path | None = None

    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "evidence"
    s3_secure: bool = True
    s3_region: str | None = None

    # OIDC bearer tokens: all three of issuer, audience and JWKS URL, or none.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_organisation_claim: str = "locker_org"
    oidc_role_claim: str = "locker_role"
    oidc_email_claim: str = "email"

    # RFC 3161 timestamps of checkpoints: one or more TSA URLs (commas or spaces between),
    # and the CA certificate file (PEM) their tokens must chain to: one for all, or one per
    # URL in the same order. Each authority is asked every tsa_interval seconds.
    tsa_url: str | None = None
    tsa_ca_file: Annotated[str | None, BeforeValidator(_path_text)] = None
    tsa_timeout: float = Field(default=10.0, gt=0, le=300)
    tsa_interval: float = Field(default=300.0, gt=0)
    # Violation categories: a JSON list of terms, or {"categories": [...]}; else the default.
    vocabulary_file: Path | None = None
    # Perceptual-hash bits two images may differ by and still be "the same picture"
    # (inclusive): ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD.
    near_duplicate_threshold: int = Field(default=31, ge=0, le=128)
    # Metadata extraction runs in a child process under these limits.
    analysis_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    analysis_memory_mb: int = Field(default=1024, ge=64)
    analysis_max_bytes: int = Field(default=4 * 1024**3, ge=0)

    retention_days: int = Field(default=3650, ge=1, le=36500)
    max_upload_bytes: int = Field(default=64 * 1024**3, ge=1)
    # A client that sends nothing for this long has gone (it would hold its upload open);
    # an upload intent without a heartbeat for this long belongs to no running request.
    upload_idle_timeout_seconds: float = Field(default=120, gt=0, le=3600)
    # A resumable upload (tus, /v1/uploads) untouched for this long expires: its parts
    # are removed by the worker's housekeeping and by `locker fsck --repair`.
    upload_expiry_seconds: float = Field(default=24 * 3600, gt=0, le=30 * 24 * 3600)
    # Jobs (exports, analysis, timestamps): on PostgreSQL `locker serve` runs a worker of
    # its own unless jobs_in_process is off (then run `locker worker`); a job whose worker
    # sends no heartbeat for three intervals is retried; owed work is queued again, and
    # stale upload intents settled, every job_reconcile_seconds (0: only at start); a
    # failed job is retried after
    # job_backoff_seconds, then twice as long each time.
    jobs_in_process: bool = True
    job_heartbeat_seconds: float = Field(default=10.0, gt=0, le=600)
    job_backoff_seconds: float = Field(default=2.0, ge=0, le=3600)
    job_reconcile_seconds: float = Field(default=60.0, ge=0)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto the server believes: comma-separated
    # addresses or networks. None by default: a client's own headers never pick its address.
    trusted_proxies: str = ""
    # A client must send a request's whole header within this many seconds (slow-header
    # clients would otherwise hold connections open indefinitely).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.s3_endpoint is not None:
            for name in ("s3_access_key", "s3_secret_key"):
                if not getattr(self, name):
                    raise ValueError(f"LOCKER_{name.upper()} is required with LOCKER_S3_ENDPOINT")
            if "://" in self.s3_endpoint:
                raise ValueError(
                    "LOCKER_S3_ENDPOINT takes host:port; use LOCKER_S3_SECURE for https"
                )
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(oidc) and not all(oidc):
            raise ValueError(
                "LOCKER_OIDC_ISSUER, LOCKER_OIDC_AUDIENCE and LOCKER_OIDC_JWKS_URL go together"
            )
        self._check_tsa()
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql", "sqlite")
        ):
            raise ValueError("LOCKER_DATABASE_URL must be a postgresql:// or sqlite:// URL")
        for proxy in self.trusted_proxy_list:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"LOCKER_TRUSTED_PROXIES: {proxy!r} is not an IP address or network"
                ) from None
        if not self.log_origin or _KEY_NAME_FORBIDDEN & set(self.log_origin):
            raise ValueError("LOCKER_LOG_ORIGIN must be non-empty, without spaces or '+'")
        return self

    def _check_tsa(self) -> None:
        urls, ca_files = self.tsa_urls, _words(self.tsa_ca_file)
        for url in urls:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"LOCKER_TSA_URL: {url} is not an http:// or https:// URL")
        if urls and not ca_files:
            raise ValueError(
                "LOCKER_TSA_CA_FILE is required with LOCKER_TSA_URL: the TSA's CA "
                "certificate, without which its tokens cannot be checked"
            )
        if len(ca_files) not in (0, 1, len(urls)):
            raise ValueError(
                f"LOCKER_TSA_CA_FILE names {len(ca_files)} files for {len(urls)} TSA URLs: "
                "give one for all, or one per URL in the same order"
            )
        names = [authority_name(url) for url in urls]
        if len(set(names)) != len(names):
            raise ValueError("LOCKER_TSA_URL names the same authority (host and port) twice")

    @property
    def tsa_urls(self) -> tuple[str, ...]:
        """The time-stamping authorities, in the order configured (the first is primary)."""
        return _words(self.tsa_url)

    @property
    def tsa_ca_files(self) -> tuple[Path, ...]:
        """Each authority's CA certificate file, in the order of `tsa_urls`."""
        files = tuple(Path(f) for f in _words(self.tsa_ca_file))
        return files * len(self.tsa_urls) if len(files) == 1 else files

    @property
    def trusted_proxy_list(self) -> list[str]:
        """LOCKER_TRUSTED_PROXIES as a list (empty: trust no forwarded header)."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data directory."""
        if self.database_url is None:
            return f"sqlite:///{(self.data_dir / 'locker.sqlite3').resolve()}"
        if self.database_url.startswith("postgresql://"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
            return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        return self.database_url

    @property
    def effective_signing_key_file(self) -> Path:
        """Where the deployment's Ed25519 log key lives."""
        return self.signing_key_file or self.data_dir / "log-signing-key"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; one ConfigurationError line on bad values."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        setting = f"LOCKER_{where.upper()}: " if where else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"{setting}{message}") from None
