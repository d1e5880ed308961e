"""The on-disk embedding cache: checksummed entries, damaged files recomputed, never trusted."""

import warnings

import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.datasets.synthetic import make_tile
from histoclick.embeddings import EmbeddingCache


@pytest.fixture(scope="module")
def model():
    return load_model("vit_tiny", device="cpu")


@pytest.fixture(scope="module")
def image():
    return make_tile(seed=3, size=96)[0]


@pytest.fixture(scope="module")
def stored(model, image, tmp_path_factory):
    """A real cache entry (its bytes) and the embedding it holds, computed once."""
    directory = tmp_path_factory.mktemp("cache")
    features = EmbeddingCache(directory).get(model, image).features
    (entry,) = directory.glob("*.pt")
    return entry.name, entry.read_bytes(), features


@pytest.fixture
def fresh(stored):
    return stored[2]


@pytest.fixture
def entry(stored, tmp_path):
    name, data, _ = stored
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_bit_flipped_entry_is_recomputed_not_trusted(model, image, fresh, entry, tmp_path):
    """Used to be trusted: one flipped bit in the tensor data changed the masks silently."""
    data = bytearray(entry.read_bytes())
    offset = data.find(fresh.numpy().tobytes()[:64])
    assert offset > 0  # torch stores the tensor bytes uncompressed in the zip
    data[offset + 1000] ^= 0x10
    entry.write_bytes(bytes(data))

    with pytest.warns(RuntimeWarning, match=rf"{entry.name}.*checksum mismatch"):
        embedding = EmbeddingCache(tmp_path).get(model, image)
    assert torch.equal(embedding.features, fresh)
    # The entry was rewritten: a new cache (a new process) now reads it back without warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(EmbeddingCache(tmp_path).get(model, image).features, fresh)


def test_entry_with_consistent_checksum_but_wrong_shape_is_rejected(model, image, fresh, entry, tmp_path):
    from histoclick.embeddings import _digest

    features = fresh[:, :, :32].contiguous()  # e.g. written by another model with a different grid
    input_size, original_size = [1024, 1024], [96, 96]
    torch.save(
        {"features": features, "input_size": input_size, "original_size": original_size,
         "sha256": _digest(features, input_size, original_size)},
        entry,
    )
    with pytest.warns(RuntimeWarning, match="shape"):
        assert torch.equal(EmbeddingCache(tmp_path).get(model, image).features, fresh)


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_empty_or_truncated_entry_is_recomputed_with_a_warning(model, image, fresh, entry, tmp_path, keep):
    data = entry.read_bytes()
    entry.write_bytes(data[: int(len(data) * keep)])
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert torch.equal(EmbeddingCache(tmp_path).get(model, image).features, fresh)


def test_cache_dir_with_tilde_goes_to_the_home_folder(model, image, tmp_path, monkeypatch):
    """Used to create a literal '~' folder in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ClickSession(model, image, cache_dir="~/embeddings")
    assert not (tmp_path / "~").exists()
    assert len(list((tmp_path / "home" / "embeddings").glob("*.pt"))) == 1

