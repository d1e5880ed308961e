"""Safe file writes: atomic replacement, an OS lock for read-modify-write, clear errors.

:func:`atomic_path` writes to a temporary ``.part`` file beside the target and renames it into
place; :func:`locked` holds an OS file lock beside the target so that a read-modify-write by one
process cannot lose another process's write. Both follow symbolic links to the file they name.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_TIMEOUT_S = 120.0


def resolved(path: str | os.PathLike) -> Path:
    """The file ``path`` names: ``~`` expanded, symbolic links followed (dangling ones too)."""
    return Path(os.path.realpath(Path(path).expanduser()))


@contextmanager
def locked(path: str | os.PathLike, timeout: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold an exclusive OS lock for ``path`` (``.<name>.lock`` beside the resolved file).

    Every process that reads, changes and writes ``path`` inside this block sees the others'
    writes: they take turns. The lock is the kernel's (``flock``), so a killed holder releases it
    at once. Yields the resolved path. Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    target = resolved(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = target.parent / f".{target.name}.lock"
    try:
        with FileLock(lock_file, timeout=timeout):
            yield target
    except Timeout:
        raise TimeoutError(
            f"{target} is being written by another process (it holds {lock_file}) and was not "
            f"released within {timeout:g} s; retry when that process has finished"
        ) from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    - Readers never see a half-written file, and a failure (also "no space left on device")
      leaves any existing ``path`` untouched and removes the temporary file.
    - A symbolic link is kept: the file it points to is written.
    - A file with more than one hard link is rewritten in place once the new content is complete
      in the temporary file, so all its names see the new content (a reader may then see a
      partial file during that copy).
    - A read-only file (no write permission bit, or not writable by this user) is refused with
      ``PermissionError``, never replaced.
    - ``.part`` files that killed writers left beside ``path`` (their process, on this machine,
      is gone) are removed.
    - The new file keeps the permissions of the file it replaces, or gets the usual ones (0666
      less the umask) rather than ``mkstemp``'s owner-only 0600.
    """
    target = resolved(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _refuse_read_only(target)
    _remove_stale_parts(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_part_prefix(target), suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        if target.exists() and target.stat().st_nlink > 1:
            _copy_in_place(Path(tmp), target)
        else:
            os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
            os.replace(tmp, target)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(
                error.errno,
                f"no space left on the device holding {target}; the file was not changed. "
                "Free some space (or write elsewhere) and try again",
                str(target),
            ) from error
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _part_prefix(target: Path) -> str:
    """``.<name>.<host>.<pid>.``: lets a later writer tell whose temporary file it is."""
    return f".{target.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_parts(target: Path) -> None:
    host = socket.gethostname()
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        owner = part.name[len(target.name) + 2 : -len(".part")].rsplit(".", 2)
        if len(owner) != 3 or owner[0] != host or not owner[1].isdigit():
            continue  # another machine's, or not ours
        pid = int(owner[1])
        if pid != os.getpid() and not _alive(pid):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _refuse_read_only(target: Path) -> None:
    if not target.exists():
        return
    mode = target.stat().st_mode
    # root may write anything, so os.access alone would not see a chmod 444.
    if not mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(
            errno.EACCES,
            f"{target} is read-only (mode {oct(mode & 0o777)}), so it is left as it is; make it "
            f"writable (chmod u+w '{target}') or write to another file",
            str(target),
        )


def _copy_in_place(source: Path, target: Path) -> None:
    """Overwrite ``target``'s content (same inode, so every hard link sees it) with ``source``'s.

    The part beyond the old size is written first: if the disk is full there, the target is cut
    back to its old size, unchanged.
    """
    old_size, new_size = target.stat().st_size, source.stat().st_size
    with open(source, "rb") as reader, open(target, "r+b") as writer:
        if new_size > old_size:
            reader.seek(old_size)
            writer.seek(old_size)
            try:
                shutil.copyfileobj(reader, writer)
                writer.flush()
                os.fsync(writer.fileno())
            except OSError:
                writer.truncate(old_size)
                raise
        reader.seek(0)
        writer.seek(0)
        remaining = min(old_size, new_size)
        while remaining:
            chunk = reader.read(min(remaining, 1 << 20))
            writer.write(chunk)
            remaining -= len(chunk)
        writer.truncate(new_size)
        writer.flush()
        os.fsync(writer.fileno())


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask
