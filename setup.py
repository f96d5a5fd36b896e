"""Package layout for setuptools (the rest of the metadata is in pyproject.toml).

The pages' files live in the top-level web/ (the project's layout); the wheel
ships them inside the server package as server/web, where server/assets.py
finds them with importlib.resources. Every folder under web/ is listed as a
data package, so whatever is added there ships without editing this file. The
documents (docs/*.md) ship the same way, as server/docs.
"""

from setuptools import find_namespace_packages, find_packages, setup

WEB_PACKAGES = ["server.web", *(f"server.web.{name}" for name in find_namespace_packages("web"))]

setup(
    # docs/*.md ship too, as server/docs: the pages link to them (the Operations page to the protocol).
    packages=[*find_packages(include=["server", "server.*"]), *WEB_PACKAGES, "server.docs"],
    package_dir={"server.web": "web", "server.docs": "docs"},
    package_data={"server": ["py.typed"], "server.docs": ["*.md"], **{name: ["*"] for name in WEB_PACKAGES}},
)
