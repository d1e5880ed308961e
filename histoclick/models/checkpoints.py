"""Official SAM checkpoints (and MobileSAM's): where they live, how they are downloaded, verified and read."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import atomic_path

CHECKPOINT_DIR_ENV = "HISTOCLICK_CHECKPOINT_DIR"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, foreign, of another variant, or unverified."""


SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# MobileSAM's weights as its authors publish them, in their repository at a fixed commit.
MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/"


@dataclass(frozen=True)
class OfficialCheckpoint:
    variant: str
    filename: str
    sha256: str  # full digest; the suffix in the file name is not a hash prefix
    base_url: str = SAM_URL

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.filename}"


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    c.variant: c
    for c in (
        OfficialCheckpoint(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        ),
        OfficialCheckpoint(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        OfficialCheckpoint(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        # MobileSAM publishes no digest itself: this is the vit_t entry of micro-sam's model
        # registry (_CHECKSUMS in micro_sam/util.py of computational-cell-analytics/micro-sam),
        # also recorded for this URL's file (40,728,226 bytes) by projects that pin that commit.
        OfficialCheckpoint(
            "vit_t",
            "mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            MOBILE_SAM_URL,
        ),
    )
}


def checkpoint_dir() -> Path:
    """The checkpoint cache: ``$HISTOCLICK_CHECKPOINT_DIR``, else ``~/.cache/histoclick/checkpoints``."""
    if os.environ.get(CHECKPOINT_DIR_ENV):
        return Path(os.environ[CHECKPOINT_DIR_ENV]).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache_home / "histoclick" / "checkpoints"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def official_checkpoint(variant: str, *, download: bool = True) -> Path:
    """Path of the verified official checkpoint of ``variant``, downloading it once if needed."""
    official = OFFICIAL_CHECKPOINTS[variant]
    path = checkpoint_dir() / official.filename
    if path.exists():
        actual = sha256_of(path)
        if actual != official.sha256:
            raise CheckpointError(
                f"{path} has SHA-256 {actual}, not the published {official.sha256} of "
                f"{official.filename}: delete it and download it again from {official.url}"
            )
        return path
    if not download:
        raise CheckpointError(
            f"no {variant} checkpoint in {path.parent}: download {official.url} into "
            f"${CHECKPOINT_DIR_ENV} or pass the checkpoint's path"
        )
    return download_file(official.url, path, official.sha256)


def download_file(url: str, destination: str | os.PathLike, sha256: str) -> Path:
    """Download ``url`` to ``destination``, renaming the file into place only once its SHA-256
    matches; a failed or mismatching download leaves nothing behind."""
    destination = Path(destination).expanduser()
    try:
        response = urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, OSError) as err:
        raise CheckpointError(
            f"could not download {url} ({getattr(err, 'reason', err)}); put the file in "
            f"${CHECKPOINT_DIR_ENV} (now {destination.parent}) or pass its path"
        ) from None
    digest = hashlib.sha256()
    with atomic_path(destination) as tmp, open(tmp, "wb") as out, response:
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc=destination.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        out.close()
        if digest.hexdigest() != sha256:
            raise CheckpointError(
                f"download of {url} has SHA-256 {digest.hexdigest()}, expected {sha256}: "
                "the file is corrupt or not the published one; it was not kept"
            )
    return destination


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file with ``torch.load(weights_only=True)``, with errors that say why."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path}; pass the path of a SAM checkpoint such as "
            f"{OFFICIAL_CHECKPOINTS['vit_b'].filename}, or a variant name like 'vit_b'"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it may be truncated or "
            "not a .pth state_dict: download it again"
        ) from None
    if not isinstance(content, dict):
        raise CheckpointError(
            f"{path} holds a {type(content).__name__}, expected a dict (a SAM state_dict)"
        )
    return content
