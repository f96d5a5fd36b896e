"""Credentials out of what jobpulse logs and shows: the password of every URL in a text, and secret query values.

Pure: a regular expression over text. `server/logs.py` runs every log record through it, the fold runs the
source's error strings through it (the health card, the banner, the status page), and the CLI its own lines.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ (the user may be empty, as in redis://:password@host); a password holds no '@' or '/'
# unescaped, and no blank.
_USERINFO = re.compile(r"(?P<lead>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/@]+)@")
_QUERY = re.compile(r"(?i)(?P<lead>[?&](?:password|passwd|pass|pwd|secret|token|sslpassword|auth)=)(?P<value>[^&#\s]+)")


def redact(text: str) -> str:
    """`text` with every URL's password and every secret query value replaced by ***."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['lead']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['lead']}{MASK}", text)
