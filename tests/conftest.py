"""Fixtures shared by the integration tests: the example model and real servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, Server, started


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example scikit-learn model, built by its own training script."""
    output = tmp_path_factory.mktemp("iris") / "model.tar.gz"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "sklearn-iris" / "train.py"),
            "--output",
            str(output),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by a test module; tests use distinct endpoint names."""
    instance = Server(tmp_path_factory.mktemp("server") / "data")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop or kill it."""
    yield from started(Server(tmp_path / "data"))
