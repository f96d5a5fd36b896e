"""Users, tokens, the proxy's rules and signed values (server/auth.py), without a server."""

from __future__ import annotations

import pytest

from server.auth import Directory, hash_password, make_token, sign, unsign


def test_users_tokens_and_passwords() -> None:
    token, digest = make_token()
    directory = Directory.parse(f"alice:operator:{hash_password('right-pass')}", f"bot:admin:{digest}")
    alice = directory.check_password("alice", "right-pass")
    assert alice is not None and (alice.name, alice.role, alice.auth) == ("alice", "operator", "session")
    assert directory.check_password("alice", "wrong-pass") is None
    assert directory.check_password("nobody", "right-pass") is None
    bot = directory.check_token(token)
    assert bot is not None and (bot.name, bot.role, bot.auth) == ("bot", "admin", "token")
    assert directory.check_token(token + "x") is None


@pytest.mark.parametrize(
    ("users", "tokens", "roles", "message"),
    [
        ("alice:operator:plaintext", "", "*=viewer", "JOBPULSE_USERS: 'alice:operator:plaintext' is not"),
        ("alice:boss:$argon2id$x", "", "*=viewer", "JOBPULSE_USERS: role 'boss' is not one of"),
        ("", "bot:admin:abc", "*=viewer", "JOBPULSE_TOKENS: 'bot:admin:abc' is not"),
        ("", "", "alice", "JOBPULSE_PROXY_ROLES: 'alice' is not user=role"),
    ],
)
def test_bad_configuration_is_named(users: str, tokens: str, roles: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("$", r"\$").replace("*", r"\*")):
        Directory.parse(users, tokens, roles)


def test_proxy_rules() -> None:
    directory = Directory.parse("", "", "alice=admin, *=viewer", "127.0.0.1, 10.0.0.0/8")
    assert directory.role_of_proxy_user("alice") == "admin"
    assert directory.role_of_proxy_user("bob") == "viewer"
    assert directory.trusts("10.1.2.3") and directory.trusts("127.0.0.1")
    assert not directory.trusts("192.168.1.1") and not directory.trusts("not-an-ip") and not directory.trusts(None)
    assert Directory.parse("", "", "alice=admin").role_of_proxy_user("bob") is None


def test_signed_values() -> None:
    signed = sign(b"secret", "value.with.dots")
    assert unsign(b"secret", signed) == "value.with.dots"
    assert unsign(b"other", signed) is None
    assert unsign(b"secret", signed[:-1] + ("0" if signed[-1] != "0" else "1")) is None
    assert unsign(b"secret", "nodot") is None


def forwarded(peer: str, *headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, object]:
    from server.security import apply_forwarded

    scope: dict[str, object] = {"type": kind, "client": (peer, 5000), "scheme": "http" if kind == "http" else "ws",
                                "headers": list(headers)}  # fmt: skip
    apply_forwarded(scope, Directory.parse("", "", "*=viewer", "127.0.0.1, 10.0.0.0/8"))
    return scope


def test_forwarded_headers_are_believed_from_trusted_peers_only() -> None:
    """Trust is the peer's that connected: a trusted proxy's X-Forwarded-For names the client; anyone else's
    header changes nothing (`X-Forwarded-For: 127.0.0.1` must not make a request look local)."""
    from server.security import PEER

    via_proxy = forwarded("127.0.0.1", (b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https"))
    assert via_proxy["client"] == ("203.0.113.9", 0) and via_proxy[PEER] == "127.0.0.1"
    assert via_proxy["scheme"] == "https"
    chained = forwarded("10.0.0.2", (b"x-forwarded-for", b"198.51.100.7, 203.0.113.9, 10.0.0.3"))
    assert chained["client"] == ("203.0.113.9", 0)  # the last address that is not a trusted proxy
    spoofed = forwarded("198.51.100.7", (b"x-forwarded-for", b"127.0.0.1"), (b"x-forwarded-proto", b"https"))
    assert spoofed["client"] == ("198.51.100.7", 5000) and spoofed["scheme"] == "http"
    assert forwarded("127.0.0.1")["client"] == ("127.0.0.1", 5000)
    upgrade = forwarded("127.0.0.1", (b"x-forwarded-proto", b"https"), kind="websocket")
    assert upgrade["scheme"] == "wss"
