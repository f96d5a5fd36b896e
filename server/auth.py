"""Who is asking: roles, principals, the configured users and API tokens, the trusted proxy header.

Pure apart from argon2's hashing (CPU only): no I/O, no clock. Sessions, which
live in Redis, are `server.sessions`; the HTTP and websocket checks are
`server.security`. docs/protocol.md section 5 is the user-facing description.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.roles import DEV, RANK, ROLES, Principal, Role

__all__ = ["DEV", "RANK", "ROLES", "Directory", "Principal", "Role", "hash_password", "make_token"]

_hasher = PasswordHasher()
_dummy_hash: list[str] = []  # made on first use: hashing costs ~0.1 s, and most imports never check a password


def _dummy() -> str:
    """A hash verified when the user name is unknown, so a wrong name costs as much time as a wrong password."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash(secrets.token_urlsafe(16)))
    return _dummy_hash[0]


def hash_password(password: str) -> str:
    """An argon2id hash for JOBPULSE_USERS."""
    return _hasher.hash(password)


def make_token() -> tuple[str, str]:
    """A new API token and the sha256 hex digest JOBPULSE_TOKENS keeps of it."""
    token = "jpt_" + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def _role(text: str, where: str) -> Role:
    for role in ROLES:
        if text == role:
            return role
    raise ValueError(f"{where}: role {text!r} is not one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class Directory:
    """The users and tokens of the configuration, and the proxy mode's rules."""

    users: dict[str, tuple[Role, str]]  # name -> (role, argon2 hash)
    tokens: dict[str, tuple[str, Role]]  # sha256 hex -> (name, role)
    proxy_roles: dict[str, Role]
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, users: str, tokens: str, proxy_roles: str = "*=viewer", trusted: str = "") -> Directory:
        """Parse JOBPULSE_USERS, JOBPULSE_TOKENS, JOBPULSE_PROXY_ROLES and JOBPULSE_TRUSTED_PROXIES.

        Raises:
            ValueError: naming the variable and the entry that does not parse.
        """
        parsed_users: dict[str, tuple[Role, str]] = {}
        for entry in users.split():
            name, _, rest = entry.partition(":")
            role, _, digest = rest.partition(":")
            if not name or not digest.startswith("$argon2"):
                raise ValueError(
                    f"JOBPULSE_USERS: {entry[:40]!r} is not name:role:argon2-hash (jobpulse hash-password)"
                )
            parsed_users[name] = (_role(role, "JOBPULSE_USERS"), digest)
        parsed_tokens: dict[str, tuple[str, Role]] = {}
        for entry in tokens.split():
            parts = entry.split(":")
            if len(parts) != 3 or len(parts[2]) != 64 or not parts[0]:
                raise ValueError(f"JOBPULSE_TOKENS: {entry[:40]!r} is not name:role:sha256 (jobpulse token)")
            parsed_tokens[parts[2].lower()] = (parts[0], _role(parts[1], "JOBPULSE_TOKENS"))
        roles: dict[str, Role] = {}
        for part in filter(None, (p.strip() for p in proxy_roles.split(","))):
            name, eq, role = part.partition("=")
            if not eq or not name.strip():
                raise ValueError(f"JOBPULSE_PROXY_ROLES: {part!r} is not user=role")
            roles[name.strip()] = _role(role.strip(), "JOBPULSE_PROXY_ROLES")
        networks = []
        for part in filter(None, (p.strip() for p in trusted.split(","))):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"JOBPULSE_TRUSTED_PROXIES: {part!r} is not an address or network") from None
        return cls(parsed_users, parsed_tokens, roles, tuple(networks))

    def check_password(self, name: str, password: str) -> Principal | None:
        """The user when `password` is theirs, else None (in about the same time either way)."""
        known = self.users.get(name)
        try:
            _hasher.verify(known[1] if known else _dummy(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if known is None:
            return None
        return Principal(name, known[0], "session")

    def check_token(self, token: str) -> Principal | None:
        found = self.tokens.get(token_digest(token))
        if found is None:
            return None
        return Principal(found[0], found[1], "token")

    def role_of_proxy_user(self, name: str) -> Role | None:
        return self.proxy_roles.get(name, self.proxy_roles.get("*"))

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def sign(secret: bytes, value: str) -> str:
    """`value.signature` (HMAC-SHA256, url-safe): cookies and confirm tokens."""
    mac = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:43]
    return f"{value}.{mac}"


def unsign(secret: bytes, signed: str) -> str | None:
    """The value of a `sign`ed string, or None when the signature does not match."""
    value, dot, mac = signed.rpartition(".")
    if not dot:
        return None
    good = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:43]
    return value if hmac.compare_digest(good, mac) else None
