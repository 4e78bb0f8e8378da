"""The locker's configuration: environment variables prefixed LOCKER_.

With nothing set, the locker runs on embedded defaults (SQLite and a filesystem object
store under LOCKER_DATA_DIR). Validators refuse contradictory or unsafe values at start,
with one line naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ConfigurationError

_KEY_NAME_FORBIDDEN = set(" \t\n+")


class Settings(BaseSettings):
    """Every setting of the locker, read from LOCKER_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_", extra="ignore", frozen=True)

    data_dir: Path = Path("./locker-data")
    database_url: str | None = None
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

    # RFC 3161 timestamps of checkpoints: the TSA's URL and the CA certificate(s) (PEM)
    # its tokens must chain to; tokens are requested every tsa_interval seconds.
    tsa_url: str | None = None
    tsa_ca_file: Path | None = None
    tsa_timeout: float = Field(default=10.0, gt=0, le=300)
    tsa_interval: float = Field(default=300.0, gt=0)
    # Violation categories: a JSON list of terms, or {"categories": [...]}; else the default.
    vocabulary_file: Path | None = None
    # Perceptual-hash bits two images may differ by and still be "the same picture".
    near_duplicate_threshold: int = Field(default=31, ge=0, le=128)
    # Metadata extraction runs in a child process under these limits.
    analysis_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    analysis_memory_mb: int = Field(default=1024, ge=64)
    analysis_max_bytes: int = Field(default=4 * 1024**3, ge=0)

    retention_days: int = Field(default=3650, ge=1, le=36500)
    max_upload_bytes: int = Field(default=64 * 1024**3, ge=1)
    # A client that sends nothing for this long has gone (it would hold its upload open).
    upload_idle_timeout_seconds: float = Field(default=120, gt=0, le=3600)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _coherent(self) -> Self:  # noqa: C901 (one check per group of settings that go together)
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
        if self.tsa_url is not None:
            if not self.tsa_url.startswith(("https://", "http://")):
                raise ValueError("LOCKER_TSA_URL must be an http:// or https:// URL")
            if self.tsa_ca_file is None:
                raise ValueError(
                    "LOCKER_TSA_CA_FILE is required with LOCKER_TSA_URL: the TSA's CA "
                    "certificate, without which its tokens cannot be checked"
                )
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql", "sqlite")
        ):
            raise ValueError("LOCKER_DATABASE_URL must be a postgresql:// or sqlite:// URL")
        if not self.log_origin or _KEY_NAME_FORBIDDEN & set(self.log_origin):
            raise ValueError("LOCKER_LOG_ORIGIN must be non-empty, without spaces or '+'")
        return self

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
