"""``ops.toml``: where the console keeps its state, reads the CDP, meets the broker and finds
the signing key. Every key is optional; relative paths are relative to the file.

    [console]
    state_dir = "var/console"     # accounts.db (0600) and the session secret (0600)
    host = "127.0.0.1"            # a network-facing console: with TLS (below or in front)
    port = 8470
    timezone = "Europe/Berlin"    # KPI days are cut at this zone's midnight
    secure_cookies = false        # true behind a TLS proxy: the session cookie only over https
    tls_cert = "tls/console.crt"  # HTTPS served by the console itself (cookies then Secure);
    tls_key = "tls/console.key"   #   or --tls-cert / --tls-key
    content_dir = "content"       # the photos ops push, as a box's content cache holds them
                                  #   (assets/<sha256>): previews draw them as screens will

    [cdp]
    db = "var/cdp.db"             # the CDP sink's SQLite (read)
    # dsn = "postgresql://console@cdp-db.example.net/cdp"   # or the sinks' PostgreSQL store

    [broker]                      # the fleet broker, as for edge-ops (TLS with ca/cert/key)
    host = "127.0.0.1"
    port = 1883

    [signing]
    key = "keys/ops_private.pem"  # stays on this host; read at each push
    expires_in_s = 3600
    unlock_minutes = 480          # an encrypted key (keygen --encrypt), unlocked in the browser,
                                  #   locks itself again after this long
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.mqtt import BrokerConfig
from contracts.validation import first_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsoleSection(_Strict):
    state_dir: Path = Path("var/console")
    host: str = "127.0.0.1"
    port: int = Field(8470, ge=0, le=65535)
    timezone: str = "UTC"
    secure_cookies: bool = False
    # The console serves HTTPS itself with these (PEM files); its cookies are then Secure.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Where this host keeps the assets it pushes, by sha256: a preview draws a variant's photo
    # from here; without it (or the file) the card is drawn text-led, as a box without it would.
    content_dir: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone (e.g. UTC, Europe/Paris)") from None
        return v


class CdpSection(_Strict):
    db: Path = Path("var/cdp.db")
    # The PostgreSQL store the sinks share (central/cdp_store.py); when set, ``db`` is unused.
    dsn: str | None = None

    @field_validator("dsn")
    @classmethod
    def _is_dsn(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        return v


class BrokerSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"

    def config(self) -> BrokerConfig:
        return BrokerConfig(
            host=self.host,
            port=self.port,
            tls=self.ca is not None,
            ca_file=self.ca,
            cert_file=self.cert,
            key_file=self.key,
            protocol=self.protocol,
        )


class SigningSection(_Strict):
    key: Path = Path("keys/ops_private.pem")
    expires_in_s: float = Field(3600.0, gt=0)
    # An encrypted key, once unlocked in the browser, locks itself again after this long.
    unlock_minutes: float = Field(480.0, gt=0, le=7 * 24 * 60)


class OpsConfig(_Strict):
    console: ConsoleSection = ConsoleSection()
    cdp: CdpSection = CdpSection()
    broker: BrokerSection = BrokerSection()
    signing: SigningSection = SigningSection()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.console.timezone)

    def resolved(self, base: Path) -> OpsConfig:
        """Relative paths made relative to ``base`` (the config file's folder)."""

        def at(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else base / p)

        b = self.broker
        return OpsConfig(
            console=self.console.model_copy(
                update={
                    "state_dir": at(self.console.state_dir),
                    "tls_cert": at(self.console.tls_cert),
                    "tls_key": at(self.console.tls_key),
                    "content_dir": at(self.console.content_dir),
                }
            ),
            cdp=CdpSection(db=at(self.cdp.db) or self.cdp.db, dsn=self.cdp.dsn),
            broker=b.model_copy(update={"ca": at(b.ca), "cert": at(b.cert), "key": at(b.key)}),
            signing=self.signing.model_copy(update={"key": at(self.signing.key)}),
        )


class ConfigError(ValueError):
    pass


def load(path: str | Path | None) -> OpsConfig:
    """The config, or ConfigError with one line naming the key at fault."""
    if path is None:
        return OpsConfig().resolved(Path.cwd())
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: {exc}") from None
    try:
        return OpsConfig.model_validate(doc).resolved(p.resolve().parent)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {first_error(exc, '')}") from None
