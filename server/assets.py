"""Where the pages' files are: templates, CSS, ES modules and vendored uPlot; and the documents.

The repository keeps them in the top-level web/; the wheel ships the same tree
as package data at server/web (setup.py maps one onto the other). An installed
jobpulse finds them with importlib.resources, a checkout beside server/.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


class AssetsMissing(RuntimeError):
    """Neither the installed package data nor a checkout's web/ holds the pages."""


def web_dir() -> Path:
    """The folder holding templates/, css/, js/ and vendor/.

    Raises:
        AssetsMissing: when jobpulse was installed without its pages (a broken build), saying where it looked.
    """
    packaged = importlib.resources.files("server") / "web"
    # A regular install unpacks the wheel, so this is a real folder; Starlette's StaticFiles needs one.
    candidates = [Path(str(packaged)), Path(__file__).resolve().parent.parent / "web"]
    for candidate in candidates:
        if (candidate / "templates" / "base.html").is_file():
            return candidate
    raise AssetsMissing(
        "jobpulse's pages are missing (looked in " + " and ".join(str(c) for c in candidates) + "): "
        "reinstall from a wheel built with `pip wheel .`, which ships them as server/web"
    )


def docs_dir() -> Path | None:
    """The folder holding the documents (protocol.md, ...): the installed package data or a checkout's docs/."""
    packaged = importlib.resources.files("server") / "docs"
    for candidate in (Path(str(packaged)), Path(__file__).resolve().parent.parent / "docs"):
        if (candidate / "protocol.md").is_file():
            return candidate
    return None
