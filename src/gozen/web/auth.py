"""Who may act: users with scrypt-hashed passwords, API tokens, and the login session."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from gozen.config import Config, User

# scrypt parameters (RFC 7914 interactive-login strength); stdlib, no extra dependency.
_N, _R, _P = 2**14, 8, 1
DEFAULT_ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # viewer | operator
    via: str  # session | basic | token

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_admin_password_file(cfg: Config) -> Path:
    return cfg.run_dir / "web-admin-password"


def ensure_default_admin(cfg: Config) -> str | None:
    """With no users configured, an `admin` whose random password lives in a 0600 file.

    Returns the file's path for people to be told where it is, or None when users exist.
    """
    if cfg.web.users:
        return None
    path = default_admin_password_file(cfg)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(12) + "\n")
    return str(path)


class Authenticator:
    """Checks passwords and tokens against the config (and the default admin's file)."""

    def __init__(self, cfg: Config) -> None:
        users = list(cfg.web.users)
        if not users:
            ensure_default_admin(cfg)
            pw = default_admin_password_file(cfg).read_text().strip()
            users = [User(name=DEFAULT_ADMIN, password_hash=hash_password(pw), role="operator")]
        self._users = {u.name: u for u in users}
        self._tokens = {t.token_sha256: t for t in cfg.web.api_tokens}
        # Checked for unknown names, so that they cost what a wrong password costs (no user-name oracle).
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))

    def login(self, name: str, password: str) -> Identity | None:
        user = self._users.get(name)
        if user is None:
            verify_password(password, self._dummy_hash)
            return None
        if not verify_password(password, user.password_hash):
            return None
        return Identity(user.name, user.role, "session")

    def role_of(self, name: str) -> str | None:
        user = self._users.get(name)
        return user.role if user else None

    def from_authorization(self, header: str | None) -> Identity | None:
        """`Bearer TOKEN` or `Basic base64(user:password)`; None when absent or wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            tok = self._tokens.get(token_sha256(value.strip()))
            return Identity(tok.name, tok.role, "token") if tok else None
        if scheme.lower() == "basic":
            creds = basic_credentials(value)
            ident = self.login(*creds) if creds else None
            return Identity(ident.name, ident.role, "basic") if ident else None
        return None


def basic_credentials(value: str) -> tuple[str, str] | None:
    """(name, password) from the base64 part of `Authorization: Basic ...`; None when garbled."""
    try:
        name, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name, password


def session_secret(cfg: Config) -> str:
    if cfg.web.session_secret:
        return cfg.web.session_secret
    path = cfg.run_dir / "web-session-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
