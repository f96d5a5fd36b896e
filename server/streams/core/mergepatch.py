"""JSON Merge Patch (RFC 7396): make the patch between two widget views, and apply one.

Pure layer: standard library only. Widget views never hold `None` (a null in a
merge patch means "delete"), so `apply(old, diff(old, new)) == new` always
holds; the property tests check it. `web/js/patch.js` mirrors `apply`.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """Return the merge patch that turns `old` into `new`, or None when they are equal."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is _MISSING:
            patch[key] = value
        elif before != value:
            if type(value) is dict and type(before) is dict:
                inner = diff(before, value)
                if inner is not None:
                    patch[key] = inner
            else:
                patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch or None


def apply(target: Any, patch: Any) -> Any:
    """Apply a merge patch to `target` and return the result (RFC 7396 section 2); `target` is not modified."""
    if type(patch) is not dict:
        return patch
    result = dict(target) if type(target) is dict else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


def has_null(value: Any) -> bool:
    """True if a view holds a None anywhere inside an object (which a merge patch could not express)."""
    if type(value) is dict:
        return any(v is None or has_null(v) for v in value.values())
    if type(value) is list:
        return any(has_null(v) for v in value)
    return False
