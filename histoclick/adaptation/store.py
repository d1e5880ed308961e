"""Saving an online adapter, so tomorrow's session starts where today's ended.

Two files, written atomically:

- the adapted decoder as a histoclick fine-tuned checkpoint (only the trained decoder tensors and
  the base model's reference, :mod:`histoclick.models.finetuned`), which
  :func:`histoclick.load_model` and ``histoclick evaluate --methods sam:PATH`` take;
- the training pairs (``.npz``, read with ``allow_pickle=False``): each accepted mask, its
  ignored pixels, whether it is a replay pair, and the embedding-cache key of its tile. The
  embeddings stay in the embedding cache folder (written there on save when missing).

Where: next to a GeoJSON ``tumour.geojson`` as ``tumour.histoclick-decoder.pt`` and
``tumour.histoclick-pairs.npz``; in a QuPath project (its folder or ``project.qpproj``) as
``histoclick/adapted-decoder.pt`` and ``histoclick/adapted-pairs.npz``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from histoclick import __version__
from histoclick.embeddings import EmbeddingCache
from histoclick.files import atomic_path
from histoclick.models.checkpoints import CheckpointError, read_checkpoint
from histoclick.models.finetuned import read_metadata, save_checkpoint
from histoclick.models.loading import load_base
from histoclick.models.sam_model import Embedding, SamModel

if TYPE_CHECKING:
    from histoclick.adaptation.engine import Adapter

PAIRS_FORMAT = 1


class AdaptationFiles(NamedTuple):
    """The checkpoint of the adapted decoder and the file of its training pairs."""

    decoder: Path
    pairs: Path


def adaptation_files(anchor: str | os.PathLike) -> AdaptationFiles:
    """Where the adaptation of ``anchor`` (a ``.geojson`` file, or a QuPath project folder or
    its ``project.qpproj``) is kept."""
    anchor = Path(anchor).expanduser()
    if anchor.suffix.lower() == ".geojson":
        return AdaptationFiles(
            anchor.with_name(f"{anchor.stem}.histoclick-decoder.pt"),
            anchor.with_name(f"{anchor.stem}.histoclick-pairs.npz"),
        )
    project = anchor.parent if anchor.suffix == ".qpproj" else anchor
    if (project / "project.qpproj").is_file():
        return AdaptationFiles(project / "histoclick" / "adapted-decoder.pt", project / "histoclick" / "adapted-pairs.npz")
    raise ValueError(
        f"{anchor} is neither a .geojson file nor a QuPath project (a folder holding project.qpproj): "
        "give the GeoJSON the annotations go to, or the project folder"
    )


def save(adapter: Adapter, anchor: str | os.PathLike) -> AdaptationFiles:
    """Write ``adapter``'s current decoder and its pairs for ``anchor`` (see the module
    docstring); embeddings missing from ``adapter.cache_dir`` are written there. Raises
    ValueError without a cache folder while there are pairs (their embeddings would be lost)."""
    files = adaptation_files(anchor)
    pairs, status = adapter.pairs, adapter.status
    if pairs and adapter.cache_dir is None:
        raise ValueError(
            "the adapter keeps its embeddings in memory only, so its pairs could not be used "
            "tomorrow: create it with cache_dir= (the embedding cache folder) to save"
        )
    if pairs:
        cache = EmbeddingCache(adapter.cache_dir)
        for pair in pairs:
            if pair.key not in cache:
                cache.store(pair.key, pair.embedding)
    files.decoder.parent.mkdir(parents=True, exist_ok=True)
    save_decoder(adapter, files.decoder)
    arrays: dict[str, Any] = {
        "meta": np.array(json.dumps({
            "format": PAIRS_FORMAT, "version": __version__, "encoder_identity": adapter.encoder_identity,
            "decoder": status.decoder, "refits": status.refits,
        })),
        "keys": np.array([p.key for p in pairs], dtype=str),
        "held_out": np.array([p.held_out for p in pairs], dtype=bool),
    }
    for i, pair in enumerate(pairs):
        arrays[f"mask_{i}"] = pair.mask
        if pair.ignore is not None:
            arrays[f"ignore_{i}"] = pair.ignore
    with atomic_path(files.pairs) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return files


def save_decoder(adapter: Adapter, path: str | os.PathLike) -> Path:
    """Write ``adapter``'s current decoder as a histoclick fine-tuned checkpoint (atomically):
    ``histoclick.load_model(path)`` rebuilds the adapted model from the base it names."""
    return save_checkpoint(
        path, adapter.model, base=adapter.origin, scenario=adapter.config.scenario,
        trainable=adapter.trainable, config=adapter.config.to_dict(), epoch=adapter.status.refits,
    )


def load(
    anchor: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    background: bool = True,
) -> Adapter:
    """The adapter :func:`save` wrote for ``anchor``: its base model (loaded as the checkpoint
    names it), the saved decoder as the current one, and the pairs with their embeddings from
    ``cache_dir``. Later accepts continue from there."""
    from histoclick.adaptation.engine import AdaptConfig, Adapter, Pair

    files = adaptation_files(anchor)
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"no saved adaptation at {path}: save one with adapter.save({str(anchor)!r}) first"
            )
    content = read_checkpoint(files.decoder)
    meta = read_metadata(files.decoder, content)
    try:
        config = AdaptConfig(**meta.config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{files.decoder} is not an online-adaptation checkpoint ({err}): load it with "
            "histoclick.load_model instead"
        ) from None
    adapter = Adapter(load_base(meta.base, files.decoder, device), config, cache_dir=cache_dir, background=background)
    with np.load(files.pairs, allow_pickle=False) as saved:
        info = json.loads(str(saved["meta"]))
        if info.get("format") != PAIRS_FORMAT:
            raise ValueError(f"{files.pairs} has pairs format {info.get('format')!r}, this histoclick reads {PAIRS_FORMAT}")
        if info["encoder_identity"] != adapter.encoder_identity:
            raise ValueError(
                f"{files.pairs} holds pairs of image encoder {info['encoder_identity']}, but its "
                f"decoder's base has encoder {adapter.encoder_identity}: the two files do not belong together"
            )
        pairs = [
            Pair(
                str(key), cached_embedding(cache_dir, str(key), adapter.base, saved[f"mask_{i}"].shape, files.pairs),
                saved[f"mask_{i}"], saved[f"ignore_{i}"] if f"ignore_{i}" in saved else None, bool(held),
            )
            for i, (key, held) in enumerate(zip(saved["keys"], saved["held_out"]))
        ]
        adapted = info["decoder"] == "adapted"
    current = adapter.adapted_from_tensors(content["state_dict"], files.decoder) if adapted else None
    adapter.restore(pairs, current, meta.epoch)
    return adapter


def cached_embedding(
    cache_dir: str | os.PathLike | None,
    key: str,
    model: SamModel,
    tile_shape: tuple[int, int],
    needed_by: str | os.PathLike = "the pair",
) -> Embedding:
    """The embedding of a ``tile_shape`` (height, width) tile stored under ``key`` in the cache
    folder ``cache_dir`` (checked by the cache as when it serves a session)."""
    embedding = None if cache_dir is None else EmbeddingCache(cache_dir).load(key, model, tile_shape)
    if embedding is None:
        raise FileNotFoundError(
            f"the embedding {key[:12]}... that {needed_by} needs is not in the embedding cache "
            f"{cache_dir}: pass the cache_dir the annotation session used (or open the tile once "
            "in a session with that cache_dir)"
        )
    return embedding
