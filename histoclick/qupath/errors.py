"""Finding QuPath for paquo, and the errors the QuPath layer raises.

paquo drives QuPath's own Java code, so every project entry point needs a QuPath installation.
The lookup is paquo's own (``PAQUO_QUPATH_DIR``, ``qupath_dir`` in ``.paquo.toml``, then its
search folders); when it fails, every entry point raises the one :class:`QuPathNotFoundError`.
"""

from __future__ import annotations

from pathlib import Path

QUPATH_VERSION = "0.5.1"

INSTALL_HINT = (
    "install it for paquo with "
    f"`python -m paquo get_qupath --install-path DIR {QUPATH_VERSION}` (DIR: an existing folder) "
    "and set PAQUO_QUPATH_DIR to the QuPath folder it prints (or qupath_dir in .paquo.toml)"
)


class QuPathNotFoundError(RuntimeError):
    """No QuPath installation for paquo: project files cannot be read or written."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"QuPath not found ({reason}): {INSTALL_HINT}")


class ImageUnreachableError(FileNotFoundError):
    """The image behind a project entry is not a local file histoclick can reach.

    The file is missing, or the entry is not a file at all (an OMERO or http URI, a combined
    image made of several files), so histoclick can neither read its pixels nor save its data.
    """


class UnsupportedImageError(ValueError):
    """A project entry's pixels are a transform of its file that histoclick cannot reproduce.

    QuPath shows rotated, cropped, affine-transformed and sparse images, and the series of a
    multi-series (Bio-Formats) file, in a frame other than the file's own; reading the file would
    give the wrong pixels for the entry's annotations.
    """


class ProjectChangedError(RuntimeError):
    """An image's data file changed on disk (e.g. saved by QuPath) since histoclick read it."""


def find_qupath() -> Path:
    """Return the QuPath application folder paquo would use, without starting Java.

    Raises:
        QuPathNotFoundError: when paquo's lookup finds no usable QuPath.
    """
    from paquo._config import settings, to_kwargs
    from paquo.jpype_backend import find_qupath as paquo_find_qupath

    try:
        info = paquo_find_qupath(**to_kwargs(settings))
    except (ValueError, FileNotFoundError, IsADirectoryError) as error:
        raise QuPathNotFoundError(str(error) or type(error).__name__) from None
    return Path(info.app_dir)


def require_paquo() -> None:
    """Import paquo's QuPath-backed modules (this starts Java) or raise :class:`QuPathNotFoundError`."""
    find_qupath()
    try:
        import paquo.projects  # noqa: F401
    except (ValueError, FileNotFoundError) as error:  # paquo.java's own lookup at import
        raise QuPathNotFoundError(str(error)) from None
