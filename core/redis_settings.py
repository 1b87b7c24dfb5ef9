"""Redis connection settings parsed from one URL, the way arq's ``RedisSettings.from_dsn`` does it."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_SCHEMES = ("redis", "rediss", "unix")


class RedisSettings(BaseModel):
    """Where Redis is. The password stays a :class:`SecretStr`.

    Log :attr:`redacted_url`; connect with :meth:`url`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["redis", "rediss", "unix"] = "redis"
    host: str = "localhost"
    port: int = Field(default=6379, ge=1, le=65535)
    database: int = Field(default=0, ge=0)
    username: str | None = None
    password: SecretStr | None = None
    unix_socket_path: str | None = None

    @property
    def ssl(self) -> bool:
        return self.scheme == "rediss"

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        """Parse ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...`` or ``unix:///path?db=N``.

        Raises ``ValueError`` with a message that never contains the password.
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"{_redact(url)!r} is not a redis://, rediss:// or unix:// URL")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{_redact(url)!r} has an invalid port") from None
        username = unquote(parts.username) if parts.username else None
        password = SecretStr(unquote(parts.password)) if parts.password else None
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"{_redact(url)!r} has no socket path")
            db_text = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db", "0")
            return cls(
                scheme="unix",
                unix_socket_path=parts.path,
                database=_db(db_text, url),
                username=username,
                password=password,
            )
        if not parts.hostname:
            raise ValueError(f"{_redact(url)!r} has no host")
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port or 6379,
            database=_db(parts.path.lstrip("/") or "0", url),
            username=username,
            password=password,
        )

    def url(self, *, redact: bool = False) -> str:
        """The URL to connect with (it contains the password unless ``redact``)."""
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + ("***" if redact else quote(self.password.get_secret_value(), safe=""))
            auth += "@"
        if self.scheme == "unix":
            return f"unix://{auth}{self.unix_socket_path}?db={self.database}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}/{self.database}"

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced by ``***``: safe to log."""
        return self.url(redact=True)

    def __repr__(self) -> str:
        return f"RedisSettings({self.redacted_url!r})"

    __str__ = __repr__


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{_redact(url)!r}: database {text!r} is not a number")
    return int(text)


def _redact(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url.strip()
