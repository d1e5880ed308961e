"""Atomic writes: all or nothing, with ordinary permissions."""

import os
import stat

import pytest

from histoclick.files import atomic_path


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["out.txt"]


def test_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_permissions_follow_the_umask_or_the_replaced_file(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        existing = tmp_path / "existing.txt"
        existing.write_text("x")
        existing.chmod(0o640)
        with atomic_path(existing) as tmp:
            tmp.write_text("y")
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    finally:
        os.umask(old)
