"""The study's peers through histoclick's runner, against their own evaluation loops.

Their real code (../shared/peers: the projects' ``isegm`` packages, no weights) with randomly
initialised models saved as their checkpoints are: ``{"config": model._config, "state_dict": ...}``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import IN_CI
from histoclick.cli import main
from histoclick.datasets.synthetic import make_tile, write_sample
from histoclick.evaluation import Dataset, Sample, evaluate, load_records, make_method
from histoclick.evaluation.peers import ISEGM_ROOT_ENV, PeerUnavailable, import_isegm

PEERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers"
MAX_CLICKS = 3


class Tiles(Dataset):
    def __init__(self, n: int = 2, size: int = 96) -> None:
        super().__init__("tiles")
        self.n, self.size = n, size

    @property
    def sample_ids(self) -> list[str]:
        return [f"t{i}" for i in range(self.n)]

    def load(self, sample_id: str) -> Sample:
        image, mask = make_tile(int(sample_id[1:]) + 3, self.size)
        return Sample(sample_id, image, mask > 0)


def peer_root(name: str) -> Path:
    root = PEERS_DIR / name
    if not (root / "isegm").is_dir():
        pytest.skip(f"needs the peers' code at {root} (../shared/peers)")
    if name != "ritm" and importlib.util.find_spec("mmcv") is None:
        reason = "FocalClick and SimpleClick need mmcv 1.x: the peers extra (pyproject.toml)"
        if IN_CI:  # .ci/run installs it: the study's peers must run there
            pytest.fail(reason)
        pytest.skip(reason)
    return root


def their_loop(method, dataset, pred_thr, **extra):
    """The project's own evaluate_sample on every sample, with the predictor histoclick built:
    per sample its clicks, float32 IoUs and the mask after each click (their callback)."""
    with method._running():
        evaluation = importlib.import_module("isegm.inference.evaluation")
    results = {}
    for sample in dataset:
        masks = []
        with method._running():
            clicks, ious, _ = evaluation.evaluate_sample(
                image=sample.image, gt_mask=sample.gt.astype(np.int32), predictor=method.predictor,
                max_iou_thr=0.90, pred_thr=pred_thr, max_clicks=MAX_CLICKS,
                callback=lambda image, gt, probs, *_: masks.append(probs > pred_thr), **extra,
            )
        clicks = [(int(c.coords[0]), int(c.coords[1]), bool(c.is_positive)) for c in clicks]
        results[sample.id] = (sample.gt, clicks, ious, masks)
    return results


def runner_equals_their_loop(method, tmp_path, pred_thr, **extra):
    """Run ``method`` through histoclick's runner, then the project's own loop on the same
    predictor: the same clicks and the same float32 IoUs, sample by sample, up to an exact tie.

    Their clicker ranks float32 OpenCV distances, so at an exact tie its choice depends on
    rounding noise (issue 13); there the two loops may part. Such a step must be a tie in exact
    arithmetic (both clicks at the largest exact distance of the same error map); the sample's
    comparison ends there."""
    dataset = Tiles()
    evaluate(method, dataset, tmp_path / "out", max_clicks=MAX_CLICKS, target_iou=0.90, verbose=False)
    records = load_records(tmp_path / "out" / "records.csv")
    theirs = their_loop(method, dataset, pred_thr, **extra)
    assert set(records["sample"]) == set(theirs)
    compared = 0
    for sample_id, (gt, clicks, ious, masks) in theirs.items():
        mine = records[records["sample"] == sample_id]
        ours = list(zip(mine["y"], mine["x"], mine["positive"].astype(bool)))
        for k, (our_click, their_click) in enumerate(zip(ours, clicks)):
            if our_click != their_click:
                assert_exact_tie(gt, masks[k - 1] if k else np.zeros_like(gt), clicks[:k], our_click, their_click)
                break
            assert mine["iou"].iloc[k] == np.float32(ious[k])
            compared += 1
        else:
            assert len(ours) == len(clicks)
    assert compared >= len(theirs) + 1  # every first click, and at least one later click


def assert_exact_tie(gt, pred, earlier, ours, theirs):
    from histoclick.evaluation.clicker import error_regions, squared_distances

    not_clicked = np.ones(gt.shape, bool)
    for y, x, _ in earlier:
        not_clicked[y, x] = False
    fn, fp = (squared_distances(region) * not_clicked for region in error_regions(gt, pred))
    if ours[2] != theirs[2]:  # positive or negative: a tie between the two maps' maxima
        assert fn.max() == fp.max()
        return
    squared = fn if ours[2] else fp
    assert squared[ours[:2]] == squared[theirs[:2]] == squared.max()


def save(model, path: Path) -> Path:
    """A checkpoint as the projects' trainers write it."""
    torch.save({"config": model._config, "state_dict": model.state_dict()}, path)
    return path


def save_ritm_checkpoint(tmp_path: Path) -> Path:
    modules = import_isegm(peer_root("ritm"))
    hrnet = importlib.import_module("isegm.model.is_hrnet_model")
    torch.manual_seed(0)
    # RITM's hrnet18s itermask configuration (models/iter_mask/hrnet18s_cocolvis_itermask_3p.py).
    model = hrnet.HRNetModel(
        width=18, ocr_width=64, small=True, with_aux_output=True, use_leaky_relu=True,
        use_rgb_conv=False, use_disks=True, norm_radius=5, with_prev_mask=True,
    )
    assert modules["isegm.inference.clicker"].__file__.startswith(str(PEERS_DIR / "ritm"))
    return save(model, tmp_path / "hrnet18s_random.pth")


@pytest.mark.slow
def test_ritm_through_the_runner_equals_ritms_own_loop(tmp_path):
    checkpoint = save_ritm_checkpoint(tmp_path)
    method = make_method(f"ritm:{checkpoint}", device="cpu", isegm_root=peer_root("ritm"))
    assert method.name.startswith("ritm:hrnet18s_random@") and len(method.weights) == 64
    runner_equals_their_loop(method, tmp_path, pred_thr=0.49)


def test_a_peer_without_code_or_checkpoint_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ISEGM_ROOT_ENV, raising=False)
    with pytest.raises(PeerUnavailable, match="--isegm-root ritm=DIR .*SamsungLabs/ritm") as info:
        make_method("ritm:missing.pth")
    assert "\n" not in str(info.value)
    with pytest.raises(PeerUnavailable, match="has no isegm/ folder"):
        make_method("simpleclick:x.pth", isegm_root=tmp_path)
    monkeypatch.setenv(ISEGM_ROOT_ENV, str(peer_root("ritm")))
    with pytest.raises(PeerUnavailable, match="needs a FocalClick checkpoint file: .*missing.pth does not exist"):
        make_method(f"focalclick:{tmp_path / 'missing.pth'}")
    # One checkout per project: the project's own entry wins over the shared root.
    with pytest.raises(PeerUnavailable, match=f"{tmp_path} has no isegm/ folder"):
        make_method("ritm:x.pth", isegm_root={"ritm": tmp_path, "simpleclick": peer_root("ritm")})
    data = write_sample(tmp_path / "tiles", n=1, size=64)
    code = main(["evaluate", "--data", str(data), "--methods", "ritm:nope.pth", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "ritm:nope.pth needs a RITM checkpoint file" in err and "Traceback" not in err


def save_focalclick_checkpoint(tmp_path: Path) -> Path:
    import_isegm(peer_root("clickseg"))
    hrnet = importlib.import_module("isegm.model.is_hrnet_model")
    torch.manual_seed(0)
    # FocalClick's hrnet18s S2 configuration (models/focalclick/hrnet18s_S2_cclvs.py).
    model = hrnet.HRNetModel(
        pipeline_version="s2", width=18, ocr_width=48, small=True, with_aux_output=True,
        use_leaky_relu=True, use_rgb_conv=False, use_disks=True, norm_radius=5,
        with_prev_mask=True,
    )
    return save(model, tmp_path / "focal_hrnet18s_random.pth")


@pytest.mark.slow
def test_focalclick_through_the_runner_equals_focalclicks_own_loop(tmp_path):
    checkpoint = save_focalclick_checkpoint(tmp_path)
    method = make_method(f"focalclick:{checkpoint}", device="cpu", isegm_root=peer_root("clickseg"))
    assert method.name.startswith("focalclick:focal_hrnet18s_random@") and method.pred_thr == 0.5
    assert type(method.predictor).__name__ == "FocalPredictor"  # focus crop + refinement
    # Their loop at their threshold, with progressive merge on as they run it (no init mask).
    runner_equals_their_loop(method, tmp_path, pred_thr=0.5, init_mask=None, vis=False, progressive_mode=True)


def save_simpleclick_checkpoint(tmp_path: Path) -> Path:
    import_isegm(peer_root("simpleclick"))
    plainvit = importlib.import_module("isegm.model.is_plainvit_model")
    loss = importlib.import_module("isegm.model.modeling.transformer_helper.cross_entropy_loss")
    torch.manual_seed(0)
    # A narrow, shallow version of SimpleClick's plainvit_base448 configuration: same classes and
    # parameter kinds (its loss_decode object included), 224-pixel pretraining grid.
    model = plainvit.PlainVitModel(
        use_disks=True, norm_radius=5, with_prev_mask=True,
        backbone_params=dict(img_size=(224, 224), patch_size=(16, 16), in_chans=3, embed_dim=64,
                             depth=8, num_heads=2, mlp_ratio=4, qkv_bias=True),
        neck_params=dict(in_dim=64, out_dims=[32, 64, 128, 256]),
        head_params=dict(in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3], dropout_ratio=0.1,
                         num_classes=1, loss_decode=loss.CrossEntropyLoss(), align_corners=False,
                         upsample="x1", channels=32),
    )
    return save(model, tmp_path / "plainvit_tiny_random.pth")


@pytest.mark.slow
def test_simpleclick_through_the_runner_equals_simpleclicks_own_loop(tmp_path):
    checkpoint = save_simpleclick_checkpoint(tmp_path)
    method = make_method(f"simpleclick:{checkpoint}", device="cpu", isegm_root=peer_root("simpleclick"))
    assert method.name.startswith("simpleclick:plainvit_tiny_random@")
    # SimpleClick's zoom-in: every click (skip_clicks -1) on a 448x448 input, and the ViT's
    # positional embedding interpolated from the 14x14 grid to 28x28.
    assert method.predictor.zoom_in.skip_clicks == -1 and method.predictor.zoom_in.target_size == (448, 448)
    assert method.predictor.net.backbone.pos_embed.shape[1] == 1 + 28 * 28
    runner_equals_their_loop(method, tmp_path, pred_thr=0.49)


@pytest.mark.slow
def test_two_projects_in_one_cli_run(tmp_path, capsys):
    ritm, focal = save_ritm_checkpoint(tmp_path), save_focalclick_checkpoint(tmp_path)
    data = write_sample(tmp_path / "tiles", n=1, size=64)
    code = main([
        "evaluate", "--data", str(data), "--methods", f"ritm:{ritm}", f"focalclick:{focal}",
        "--isegm-root", f"ritm={peer_root('ritm')}", f"focalclick={peer_root('clickseg')}",
        "--max-clicks", "2", "--device", "cpu", "--out", str(tmp_path / "out"),
    ])
    assert code == 0
    records = load_records(tmp_path / "out" / "records.csv")
    names = sorted(set(records["method"]))
    assert [n.split("@")[0] for n in names] == ["focalclick:focal_hrnet18s_random", "ritm:hrnet18s_random"]
    assert records.groupby("method").size().tolist() == [2, 2]
    assert "ritm:hrnet18s_random" in capsys.readouterr().out
