"""Package layout for setuptools (the rest of the metadata is in pyproject.toml).

The pages' files live in the top-level web/ (the project's layout); the wheel
ships them inside the server package as server/web, where server/assets.py
finds them with importlib.resources. Every folder under web/ is listed as a
data package, so whatever is added there ships without editing this file.
"""

from setuptools import find_namespace_packages, find_packages, setup

WEB_PACKAGES = ["server.web", *(f"server.web.{name}" for name in find_namespace_packages("web"))]

setup(
    packages=[*find_packages(include=["server", "server.*"]), *WEB_PACKAGES],
    package_dir={"server.web": "web"},
    package_data={"server": ["py.typed"], **{name: ["*"] for name in WEB_PACKAGES}},
)
