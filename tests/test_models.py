"""load_model: official checkpoint handling, the tiny model, save/load, and bad checkpoints."""

import hashlib
import pickle

import numpy as np
import pytest
import torch

from histoclick.models import (
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    download_file,
    load_model,
    official_checkpoint,
    save_state_dict,
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_tiny.pth"
    save_state_dict(load_model("vit_tiny", device="cpu", seed=3), path)
    return path


def test_official_digests_are_full_sha256():
    for official in OFFICIAL_CHECKPOINTS.values():
        assert len(official.sha256) == 64 and int(official.sha256, 16) >= 0
        assert official.url.endswith(official.filename)
        # The hex suffix of the file name is not a prefix of the digest.
        assert not official.sha256.startswith(official.filename.split("_")[-1].removesuffix(".pth"))


def test_tiny_model_is_deterministic_per_seed():
    a, b, c = (load_model("vit_tiny", device="cpu", seed=s) for s in (0, 0, 1))
    wa, wb, wc = (m.sam.mask_decoder.iou_token.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.identity == b.identity != c.identity


def test_checkpoint_round_trip_gives_identical_predictions(tiny_checkpoint):
    original = load_model("vit_tiny", device="cpu", seed=3)
    from_path = load_model(tiny_checkpoint, device="cpu")
    by_name = load_model("vit_tiny", device="cpu", checkpoint=tiny_checkpoint)
    assert from_path.name == by_name.name == "vit_tiny"
    assert from_path.identity == f"vit_tiny:{hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()}"
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    outputs = []
    for model in (original, from_path, by_name):
        embedding = model.embed(image)
        outputs.append(model.decode(embedding, np.array([[10.0, 20.0]]), np.array([1])).logits)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_checkpoint_of_another_variant_is_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="holds a vit_tiny checkpoint, but vit_b was asked for"):
        load_model("vit_b", device="cpu", checkpoint=tiny_checkpoint)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pth")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'vit_x'"):
        load_model("vit_x")


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[: tiny_checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(truncated)


def test_foreign_state_dict(tmp_path):
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint.*conv1.weight"):
        load_model(foreign)


def test_non_dict_checkpoint(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="holds a Tensor, expected a dict"):
        load_model(path)


class _Payload:
    pass


def test_pickled_objects_are_not_executed(tmp_path):
    path = tmp_path / "pickled.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)


def test_shapes_that_do_not_fit(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(2, 7)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="do not fit the vit_tiny architecture"):
        load_model(broken)


def test_cached_official_checkpoint_must_match_its_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(tmp_path))
    (tmp_path / OFFICIAL_CHECKPOINTS["vit_b"].filename).write_bytes(b"not the real weights")
    with pytest.raises(CheckpointError, match="not the published ec2df627"):
        load_model("vit_b", device="cpu")


def test_missing_official_checkpoint_without_download_names_url_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        official_checkpoint("vit_l", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert OFFICIAL_CHECKPOINTS["vit_l"].url in message and "HISTOCLICK_CHECKPOINT_DIR" in message


def test_download_is_verified_then_renamed(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = download_file(source.as_uri(), tmp_path / "cache" / "model.pth", digest)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(CheckpointError, match="expected 0{64}.*not kept"):
        download_file(source.as_uri(), tmp_path / "cache" / "bad.pth", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["model.pth"]


def test_unreachable_download_is_one_clear_line(tmp_path):
    with pytest.raises(CheckpointError) as info:
        download_file("http://127.0.0.1:9/sam.pth", tmp_path / "sam.pth", "0" * 64)
    assert "could not download http://127.0.0.1:9/sam.pth" in str(info.value)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_checkpoints_command_flags_a_partial_official_file(tmp_path, monkeypatch, capsys):
    """Used to list any file with the right name as present, even a half-finished copy."""
    from histoclick.cli import main

    official = OFFICIAL_CHECKPOINTS["vit_b"]
    (tmp_path / official.filename).write_bytes(b"\x80\x02" + bytes(4096))
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(tmp_path))
    assert main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.split()[:1] == ["vit_b"]]
    assert "damaged" in line and "present" not in line and "verified" not in line
    assert "checkpoints --download vit_b" in out and "4,098 bytes" in out
    assert any("vit_h" in line and "missing" in line for line in out.splitlines())


def test_checkpoint_paths_expand_the_home_folder(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    saved = save_state_dict(load_model("vit_tiny", device="cpu", seed=3), "~/models/tiny.pth")
    assert saved == tmp_path / "models" / "tiny.pth" and not (tmp_path / "~").exists()
    assert load_model("~/models/tiny.pth", device="cpu").name == "vit_tiny"
    assert load_model("vit_tiny", device="cpu", checkpoint="~/models/tiny.pth").name == "vit_tiny"


def test_empty_and_bit_flipped_header_checkpoints_are_clear_errors(tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth.*truncated"):
        load_model(empty)
    flipped = tmp_path / "flipped.pth"
    data = bytearray(tiny_checkpoint.read_bytes())
    data[:4] = b"XXXX"  # the zip signature
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pth.*truncated"):
        load_model(flipped)
