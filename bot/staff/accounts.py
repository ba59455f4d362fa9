"""Who the staff are: named accounts (scrypt-hashed passwords, a desk or admin role) and the
STAFF_USERNAME/STAFF_PASSWORD admin of small sites, checked in constant time."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from enum import StrEnum

from ..settings import Settings
from ..store.staff import StaffStore

log = logging.getLogger("checkin_bot.staff")

# scrypt's cost: about 50 ms and 16 MB a check on a small dyno, a second for a million guesses
# of one password on a large GPU farm's memory.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 12


class Role(StrEnum):
    DESK = "desk"  # read, reply, mark handled
    ADMIN = "admin"  # also broadcast, export, purge, the audit log


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    credential: str  # changes with the password: sessions made with the old one end

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    salt_text, digest_text = (base64.b64encode(b).decode() for b in (salt, digest))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt_text}${digest_text}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(digest)),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, base64.b64decode(digest))


# scrypt runs in a thread (hashlib lets go of the GIL), a few at a time: on the event loop,
# a burst of logins held every text's answer ~50 ms each (a probe saw /sms go 0.04 -> 0.94 s).
CHECKS_AT_ONCE = 2


def password_problem(name: str, password: str) -> str | None:
    """Why a password would not do (None: it will)."""
    if len(password) < MIN_PASSWORD:
        return f"use {MIN_PASSWORD} characters or more (a passphrase is easiest)"
    if password.casefold() == name.casefold():
        return "the password cannot be the user name"
    return None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Roster:
    """The accounts that may log in: the database's, and the environment's admin."""

    def __init__(self, settings: Settings, store: StaffStore) -> None:
        self.store = store
        self._secret = (
            settings.secret_key.get_secret_value() if settings.secret_key else ""
        ).encode()
        self._env_name = settings.staff_username or ""
        password = settings.staff_password.get_secret_value() if settings.staff_password else ""
        self._env_user = _digest(self._env_name)
        self._env_password = _digest(password)
        self._env_credential = self._fingerprint(f"env\0{self._env_name}\0{password}")
        problem = password_problem(self._env_name, password) if self._env_name else None
        if password and problem:
            # As `checkin-bot staff add` refuses it for a named account: a guessable password
            # is no login (the doctor says the same), rather than one guessed within the throttle.
            log.error("STAFF_PASSWORD is too easy to guess (%s): that login is off", problem)
        self._env_ready = bool(self._env_name and password) and problem is None
        self._checking = asyncio.Semaphore(CHECKS_AT_ONCE)

    def _fingerprint(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), "sha256").hexdigest()[:32]

    def _env_account(self) -> Account:
        return Account(self._env_name, Role.ADMIN, self._env_credential)

    async def check(self, name: str, password: str) -> Account | None:
        """The account these credentials log in as, or None (in constant time for the
        environment's account; scrypt's own time for the database's)."""
        if self._env_ready:
            user_ok = hmac.compare_digest(_digest(name), self._env_user)
            password_ok = hmac.compare_digest(_digest(password), self._env_password)
            if user_ok & password_ok:
                return self._env_account()
        row = await self.store.account(name) if name and len(name) <= 64 else None
        if row is None:
            await self._matches(password, _dummy())  # the same time whether the name exists or not
            return None
        if not await self._matches(password, row.password_hash):
            return None
        return Account(row.name, Role(row.role), self._fingerprint(row.password_hash))

    async def _matches(self, password: str, stored: str) -> bool:
        async with self._checking:
            return await asyncio.to_thread(password_matches, password, stored)

    async def current(self, name: str) -> Account | None:
        """The account as it is now (None: it no longer exists)."""
        if self._env_ready and hmac.compare_digest(_digest(name), self._env_user):
            return self._env_account()
        row = await self.store.account(name)
        if row is None:
            return None
        return Account(row.name, Role(row.role), self._fingerprint(row.password_hash))

    async def known(self, name: str) -> bool:
        """Whether a name is a staff account's (failed logins name only those in the log)."""
        return (self._env_ready and name == self._env_name) or (
            bool(name) and len(name) <= 64 and await self.store.account(name) is not None
        )

    def pseudonym(self, name: str) -> str:
        """A stand-in for a typed user name that is no account's: it may be a password."""
        return "unknown-" + self._fingerprint(f"user\0{name}")[:8]


@functools.cache
def _dummy() -> str:
    return hash_password(secrets.token_urlsafe(16))
