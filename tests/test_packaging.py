"""The package metadata: one version, the runtime dependencies, no URLs the project lacks.

The wheel itself is built, installed and run by .ci/wheel-check (make wheel-check).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

import qes_async

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(PYPROJECT.read_text("utf-8"))
    return data


def test_the_version_lives_only_in_the_package() -> None:
    data = _pyproject()
    project = data["project"]
    assert "version" not in project, "pyproject repeats the version: read it from qes_async"
    assert "version" in project["dynamic"]
    dynamic = data["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "qes_async.__version__"}


def test_the_installed_metadata_carries_the_package_version() -> None:
    assert importlib.metadata.version("qes-async") == qes_async.__version__


def test_the_runtime_dependencies_are_the_four() -> None:
    names = {spec.split(">")[0].split("[")[0] for spec in _pyproject()["project"]["dependencies"]}
    assert names == {"aiohttp", "attrs", "cattrs", "backoff"}


def test_the_metadata_names_no_project_url() -> None:
    # The project has no public home yet; a URL here would point somewhere else.
    assert "urls" not in _pyproject()["project"]
    assert importlib.metadata.metadata("qes-async").get_all("Project-URL") is None


def test_docs_come_with_the_dev_extra() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert any(spec.startswith("mkdocs") for spec in extras["docs"])
    assert any("docs" in spec for spec in extras["dev"] if spec.startswith("qes-async["))
