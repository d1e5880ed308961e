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


def test_a_lock_held_by_another_process_times_out_with_a_clear_error(tmp_path):
    import subprocess
    import sys

    from histoclick.files import locked

    target = tmp_path / "a.geojson"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom histoclick.files import locked\n"
         "with locked(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)", str(target)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"a\.geojson is being written by another process"):
            with locked(target, timeout=0.3):
                pass
        holder.kill()  # kill -9 releases the kernel lock at once
        holder.wait(timeout=30)
        with locked(target, timeout=5) as resolved_target:
            assert resolved_target == target.resolve()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=30)


def test_a_symlinked_target_is_written_through_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_path(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"
