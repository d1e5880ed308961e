"""Image embeddings computed once per (model, tile): kept in memory and optionally on disk."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .files import atomic_path
from .models.sam_model import Embedding, SamModel


class EmbeddingCache:
    """Least-recently-used in-memory cache of embeddings, backed by a folder when given.

    Keys combine the identity of the model's image encoder with the tile's pixels, so a cache folder can be
    shared by several models and slides. Files are written atomically and read back with
    ``torch.load(weights_only=True)``.
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_in_memory: int = 8) -> None:
        self.directory = None if directory is None else Path(directory)
        self.max_in_memory = max_in_memory
        self._memory: OrderedDict[str, Embedding] = OrderedDict()

    def get(self, model: SamModel, image: np.ndarray) -> Embedding:
        """The embedding of ``image`` under ``model``, computed only when no cache holds it."""
        key = self.key(model, image)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        embedding = self._read(key, model) if self.directory else None
        if embedding is None:
            embedding = model.embed(image)
            if self.directory:
                self._write(key, embedding)
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

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def _read(self, key: str, model: SamModel) -> Embedding | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            saved = torch.load(path, map_location=model.device, weights_only=True)
            return Embedding(saved["features"], tuple(saved["input_size"]), tuple(saved["original_size"]))
        except Exception:  # a damaged cache entry is recomputed, never trusted
            return None

    def _write(self, key: str, embedding: Embedding) -> None:
        with atomic_path(self._path(key)) as tmp:
            torch.save(
                {
                    "features": embedding.features.cpu(),
                    "input_size": list(embedding.input_size),
                    "original_size": list(embedding.original_size),
                },
                tmp,
            )
