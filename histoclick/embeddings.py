"""Image embeddings computed once per (model, tile): kept in memory and optionally on disk."""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .files import atomic_path
from .models.sam_model import Embedding, SamModel


class EmbeddingCache:
    """Least-recently-used in-memory cache of embeddings, backed by a folder when given.

    Keys combine the identity of the model's image encoder with the tile's pixels, so a cache
    folder can be shared by several models and slides. Files are written atomically with a
    SHA-256 of their contents and read back with ``torch.load(weights_only=True)``; an entry
    whose checksum, shape, dtype or sizes do not match is recomputed and rewritten, with a
    ``RuntimeWarning`` naming the file, never trusted. ``directory`` may start with ``~``.
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_in_memory: int = 8) -> None:
        self.directory = None if directory is None else Path(directory).expanduser()
        self.max_in_memory = max_in_memory
        self._memory: OrderedDict[str, Embedding] = OrderedDict()
        self._lock = threading.Lock()  # the memory cache is shared with background threads

    def get(self, model: SamModel, image: np.ndarray) -> Embedding:
        """The embedding of ``image`` under ``model``, computed only when no cache holds it.

        Safe to call from several threads; two threads asking for the same missing embedding
        at once both compute it."""
        key = self.key(model, image)
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        embedding = self.load(key, model, image.shape[:2])
        if embedding is None:
            embedding = model.embed(image)
            self.store(key, embedding)
        with self._lock:
            self._memory[key] = embedding
            while len(self._memory) > self.max_in_memory:
                self._memory.popitem(last=False)
        return embedding

    @staticmethod
    def key(model: SamModel, image: np.ndarray) -> str:
        digest = hashlib.sha256(model.encoder_identity.encode())
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.hexdigest()

    def __contains__(self, key: str) -> bool:
        """Whether the memory cache or the folder holds an entry under ``key`` (the file
        unchecked): :meth:`get` would then not run the encoder, unless the file is damaged."""
        with self._lock:
            if key in self._memory:
                return True
        return self.directory is not None and self._path(key).exists()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str, model: SamModel, tile_shape: tuple[int, int]) -> Embedding | None:
        """The entry under ``key`` (see :meth:`key`) for a tile of ``tile_shape`` (height, width)
        pixels, checked against ``model``; None when there is none, or when it is damaged (with
        a ``RuntimeWarning`` naming the file). Reads the folder only, not the memory cache."""
        if self.directory is None or not self._path(key).exists():
            return None
        path = self._path(key)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            embedding = _checked_entry(saved, model, tuple(tile_shape))
        except Exception as error:  # torch raises many types for damaged files
            warnings.warn(
                f"embedding cache entry {path} is damaged or was written for something else "
                f"({type(error).__name__}: {error}); recomputing it and replacing the file",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        embedding.features = embedding.features.to(model.device)
        return embedding

    def store(self, key: str, embedding: Embedding) -> None:
        """Write ``embedding`` under ``key`` in the cache folder, atomically (no folder: nothing)."""
        if self.directory is None:
            return
        features = embedding.features.detach().cpu().contiguous()
        input_size, original_size = list(embedding.input_size), list(embedding.original_size)
        with atomic_path(self._path(key)) as tmp:
            torch.save(
                {
                    "features": features,
                    "input_size": input_size,
                    "original_size": original_size,
                    "sha256": _digest(features, input_size, original_size),
                },
                tmp,
            )


_SHARED_MEMORY_CACHE = EmbeddingCache()


def shared_cache(directory: str | os.PathLike | None = None) -> EmbeddingCache:
    """The cache :class:`~histoclick.ClickSession` reads for ``directory``: a cache backed by that
    folder, or, for None, the in-memory cache every session of this process shares."""
    return EmbeddingCache(directory) if directory is not None else _SHARED_MEMORY_CACHE


def _checked_entry(saved: object, model: SamModel, original_size: tuple[int, int]) -> Embedding:
    """The Embedding in a loaded cache entry, or ValueError saying what does not match."""
    if not isinstance(saved, dict) or not {"features", "input_size", "original_size", "sha256"} <= set(saved):
        raise ValueError("not a histoclick embedding entry (keys missing)")
    features, input_size, original_size_saved = saved["features"], saved["input_size"], saved["original_size"]
    if not isinstance(features, torch.Tensor) or not features.dtype.is_floating_point:
        raise ValueError(f"features are {getattr(features, 'dtype', type(features))}, expected floats")
    encoder = model.sam.prompt_encoder
    expected_shape = (1, encoder.embed_dim, *encoder.image_embedding_size)
    if tuple(features.shape) != expected_shape:
        raise ValueError(f"features have shape {tuple(features.shape)}, expected {expected_shape}")
    expected_input = model.transform.get_preprocess_shape(*original_size, model.sam.image_encoder.img_size)
    if list(original_size_saved) != list(original_size) or list(input_size) != list(expected_input):
        raise ValueError(
            f"sizes {original_size_saved} -> {input_size} do not match the tile's "
            f"{list(original_size)} -> {list(expected_input)}"
        )
    if saved["sha256"] != _digest(features, list(input_size), list(original_size_saved)):
        raise ValueError("SHA-256 checksum mismatch")
    return Embedding(features, tuple(input_size), tuple(original_size_saved))


def _digest(features: torch.Tensor, input_size: list[int], original_size: list[int]) -> str:
    digest = hashlib.sha256(f"{tuple(features.shape)} {input_size} {original_size}".encode())
    digest.update(features.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
