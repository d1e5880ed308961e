"""The QuPath-backed tests pass on every QuPath version in shared/qupath-core, not only this process's.

paquo starts one JVM, with one QuPath, per Python process, so the other versions get a fresh
pytest process each, running every test that uses the ``qupath`` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_CI, QUPATH_CORE, QUPATH_VERSION, QUPATH_VERSIONS

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("version", [v for v in QUPATH_VERSIONS if v != QUPATH_VERSION])
def test_qupath_tests_pass_on_the_other_version(version):
    if not QUPATH_CORE.is_dir():
        message = f"no QuPath core at {QUPATH_CORE}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    if "PAQUO_QUPATH_DIR" in os.environ and not os.environ["PAQUO_QUPATH_DIR"].startswith(str(QUPATH_CORE)):
        pytest.skip("PAQUO_QUPATH_DIR names a QuPath of the user's own; only that one is tested")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAQUO_")}
    env["HISTOCLICK_QUPATH_VERSION"] = version
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "qupath", "-q", "-p", "no:cacheprovider", "-rs", str(TESTS)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, f"QuPath {version}: {summary}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert " passed" in summary and "skipped" not in summary, f"QuPath {version}: {summary}"
