"""Access control: the admin password of leads, and the personal tokens of raters.

Admins (leads) prove themselves with a password. The password is configured, in this order, as
``admin_password_hash`` or ``admin_password`` in Streamlit secrets (``.streamlit/secrets.toml``),
or the environment variables ``AVGEN_ADMIN_PASSWORD_HASH`` / ``AVGEN_ADMIN_PASSWORD``; named admins
added with ``avgen study add-admin`` are checked too. Hashes are scrypt (memory-hard, in the
standard library), written ``scrypt$n$r$p$salt$hash``; ``avgen study hash-password`` makes one.

Wrong passwords are throttled server-side (`SignInThrottle`), per client address and over all
clients, so opening a new browser session does not reset the wait; the wait doubles with each
failure up to a cap, so the real admin is never locked out for longer than that.

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
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AccessError",
    "ADMIN_ENV_HASH",
    "ADMIN_ENV_PASSWORD",
    "MIN_PASSWORD_CHARS",
    "SignInThrottle",
    "SIGN_IN_THROTTLES",
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
# An admin password guards every study's data; 12 characters is the least NIST SP 800-63B and
# OWASP suggest for a password that is the only factor.
MIN_PASSWORD_CHARS = 12


class AccessError(PermissionError):
    """A request lacks the right to do what it asked; the message says what to do."""


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """A salted scrypt hash of `password`, as ``scrypt$n$r$p$salt_b64$hash_b64``.

    Raises:
        ValueError: the password is shorter than `MIN_PASSWORD_CHARS` characters.
    """
    _check_length(password, "the password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _check_length(password: str, what: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"{what} has {len(password)} characters; an admin password needs at least "
                         f"{MIN_PASSWORD_CHARS} (a few words make a good one)")


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

    Raises:
        ValueError: a plain password is configured with fewer than `MIN_PASSWORD_CHARS` characters
            (a hash is checked when it is made, by `hash_password`).
    """
    environ = os.environ if environ is None else environ
    for source in (secrets_map or {}, environ):
        for key, kind in (("admin_password_hash", "hash"), (ADMIN_ENV_HASH, "hash"),
                          ("admin_password", "password"), (ADMIN_ENV_PASSWORD, "password")):
            value = source.get(key) if hasattr(source, "get") else None
            if isinstance(value, str) and value.strip():
                if kind == "password":
                    _check_length(value, key)
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


@dataclass
class _Failures:
    count: int
    last: float


class SignInThrottle:
    """Exponential backoff of admin sign-in after wrong passwords, kept by the server process.

    After the n-th wrong password in a row (beyond `free` ones) a key waits
    ``min(base * 2**(n - free - 1), cap)`` seconds before its next try is checked at all; a right
    password clears the key, and a key with no failure for `forget_after` seconds starts afresh.
    The state lives in this object, shared by every browser session of the process, so a new
    session does not reset it; the cap keeps the real admin from being locked out for longer.

    Args:
        base: wait after the first counted failure, seconds.
        cap: longest wait, seconds.
        free: failures in a row that cost no wait (for a throttle over all clients).
        forget_after: seconds without a failure after which a key is forgotten.
        max_keys: keys kept at most (the oldest are dropped), so many addresses cannot fill memory.
        clock: monotonic clock, seconds (replaceable in tests).
    """

    def __init__(self, *, base: float = 1.0, cap: float = 60.0, free: int = 0, forget_after: float = 900.0,
                 max_keys: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap, self.free = base, cap, free
        self.forget_after, self.max_keys, self.clock = forget_after, max_keys, clock
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()  # Streamlit runs each browser session in its own thread

    def _delay(self, count: int) -> float:
        counted = count - self.free
        return 0.0 if counted <= 0 else min(self.base * 2.0 ** (counted - 1), self.cap)

    def wait_seconds(self, key: str) -> float:
        """Seconds until `key` may try a password again (0: now)."""
        with self._lock:
            entry = self._failures.get(key)
            if entry is None:
                return 0.0
            now = self.clock()
            if now - entry.last >= self.forget_after:
                del self._failures[key]
                return 0.0
            return max(0.0, entry.last + self._delay(entry.count) - now)

    def failed(self, key: str) -> float:
        """Record a wrong password for `key`; returns the wait it now has."""
        with self._lock:
            now = self.clock()
            entry = self._failures.pop(key, None)  # re-inserted last: dicts keep insertion order
            if entry is None or now - entry.last >= self.forget_after:
                entry = _Failures(0, now)
            entry.count, entry.last = entry.count + 1, now
            self._failures[key] = entry
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]
            return self._delay(entry.count)

    def succeeded(self, key: str) -> None:
        """A right password: `key` starts afresh."""
        with self._lock:
            self._failures.pop(key, None)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._failures.clear()


# The admin sign-in's throttles, one per server process: per client address (the TCP peer, which a
# client cannot forge; behind a reverse proxy every client shares the proxy's), and over all
# clients, which starts only after many failures in a row, for guesses spread over many addresses.
SIGN_IN_THROTTLES = {
    "client": SignInThrottle(base=1.0, cap=60.0),
    "all": SignInThrottle(base=1.0, cap=30.0, free=20),
}
