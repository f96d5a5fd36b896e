"""Roles and principals: who a request is, as every layer sees it.

Pure layer: no I/O. docs/protocol.md section 5 describes the roles; `server.auth`
finds principals, `server.actions` decides what each role may do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
AuthKind = Literal["session", "token", "wall", "proxy", "dev"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user (or token) as the rest of jobpulse sees it."""

    name: str
    role: Role
    auth: AuthKind
    session: str | None = None  # the session's store key, for expiry and revocation checks

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]

    def public(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "auth": self.auth}


DEV = Principal("dev", "admin", "dev")
