"""Access control: the admin password of leads, and the personal tokens of raters.

Admins (leads) prove themselves with a password. The password is configured, in this order, as
``admin_password_hash`` or ``admin_password`` in Streamlit secrets (``.streamlit/secrets.toml``),
or the environment variables ``AVGEN_ADMIN_PASSWORD_HASH`` / ``AVGEN_ADMIN_PASSWORD``; named admins
added with ``avgen study add-admin`` are checked too. Hashes are scrypt (memory-hard, in the
standard library), written ``scrypt$n$r$p$salt$hash``; ``avgen study hash-password`` makes one.

Raters hold a random token (192 bits, URL-safe) that is their identity: it is in their invite link
and, after joining with the study code, in the page's address so a reload resumes. Only the token's
SHA-256 is stored, so a leaked database does not leak working links; tokens expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AccessError",
    "ADMIN_ENV_HASH",
    "ADMIN_ENV_PASSWORD",
    "hash_password",
    "verify_password",
    "admin_credentials",
    "admin_configured",
    "check_admin",
    "new_token",
    "token_hash",
    "valid_token_format",
]

ADMIN_ENV_HASH = "AVGEN_ADMIN_PASSWORD_HASH"
ADMIN_ENV_PASSWORD = "AVGEN_ADMIN_PASSWORD"

# scrypt cost: 2**14 x 8 x 1 uses 16 MiB and ~50 ms per check, the parameters Python's docs and
# OWASP give for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class AccessError(PermissionError):
    """A request lacks the right to do what it asked; the message says what to do."""


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """A salted scrypt hash of `password`, as ``scrypt$n$r$p$salt_b64$hash_b64``.

    Raises:
        ValueError: the password is empty or shorter than 8 characters.
    """
    if len(password) < 8:
        raise ValueError("an admin password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches a hash made by `hash_password`.

    Raises:
        ValueError: `hashed` is not such a hash (a configuration mistake the lead must fix).
    """
    parts = hashed.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(
            "the admin password hash is not of the form scrypt$n$r$p$salt$hash; make one with "
            "`avgen study hash-password`"
        )
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = base64.urlsafe_b64decode(parts[4]), base64.urlsafe_b64decode(parts[5])
    except ValueError as err:
        raise ValueError(f"the admin password hash is damaged ({err}); make a new one with "
                         "`avgen study hash-password`") from None
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 2**20, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


def admin_credentials(secrets_map: Mapping[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The configured admin credential as ("hash", value) or ("password", value), or None.

    Args:
        secrets_map: Streamlit secrets (``st.secrets``) or any mapping; looked at first.
        environ: the environment (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    for source in (secrets_map or {}, environ):
        for key, kind in (("admin_password_hash", "hash"), (ADMIN_ENV_HASH, "hash"),
                          ("admin_password", "password"), (ADMIN_ENV_PASSWORD, "password")):
            value = source.get(key) if hasattr(source, "get") else None
            if isinstance(value, str) and value.strip():
                return kind, value.strip() if kind == "hash" else value
    return None


def admin_configured(secrets_map: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                     extra_hashes: list[str] | None = None) -> bool:
    """Whether any admin password exists (configured, or a named admin in the database)."""
    return admin_credentials(secrets_map, environ) is not None or bool(extra_hashes)


def check_admin(password: str, *, secrets_map: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None, extra_hashes: list[str] | None = None) -> bool:
    """Whether `password` is the configured admin password or a named admin's password.

    Raises:
        AccessError: no admin password is configured at all (say how to set one).
    """
    cred = admin_credentials(secrets_map, environ)
    if cred is None and not extra_hashes:
        raise AccessError(
            "no admin password is configured: set AVGEN_ADMIN_PASSWORD_HASH (make one with `avgen study "
            "hash-password`) or AVGEN_ADMIN_PASSWORD before starting the app, or add admin_password_hash "
            "to .streamlit/secrets.toml"
        )
    if not password:
        return False
    ok = False
    if cred is not None:
        kind, value = cred
        if kind == "hash":
            ok = verify_password(password, value)
        else:
            ok = hmac.compare_digest(password.encode(), value.encode())
    for hashed in extra_hashes or []:
        ok = ok or verify_password(password, hashed)
    return ok


def new_token() -> str:
    """A fresh rater token: 192 random bits, URL-safe, 32 characters."""
    return secrets.token_urlsafe(24)


def valid_token_format(token: str | None) -> bool:
    """Whether `token` could be a token at all (checked before any database look-up)."""
    return bool(token) and _TOKEN_RE.fullmatch(token) is not None  # type: ignore[arg-type]


def token_hash(token: str) -> str:
    """What the database stores for a token: its SHA-256, hex. (A fast hash is right here: tokens
    are random and long, so there is nothing to brute-force, unlike passwords.)"""
    return hashlib.sha256(token.encode()).hexdigest()
