"""Training first clicks against RITM's own MultiPointSampler, run for real from ../shared/peers.

RITM's ``points_sampler.py`` is executed unmodified; only the module it imports for a type
(``isegm.data.sample``, which needs albumentations) is replaced by a stub. Both samplers draw
many times on the same object and their statistics must agree.
"""

import importlib.util
import random
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from histoclick import load_model
from histoclick.datasets.synthetic import make_tile
from histoclick.training import FinetuneConfig, TileSet, TrainingData, apply_scenario
from histoclick.training.clicks import FirstClickSampler
from histoclick.training.loop import ClickTrainingModel

RITM = Path(__file__).resolve().parents[2] / "shared" / "peers" / "ritm" / "isegm"
DRAWS = 3000


def ritm_points_sampler():
    path = RITM / "data" / "points_sampler.py"
    if not path.is_file():
        pytest.skip(f"RITM's code is not at {path} (../shared/peers/ritm)")
    stubs = {name: types.ModuleType(name) for name in ("isegm", "isegm.data", "isegm.data.sample")}
    stubs["isegm"].__path__ = [str(RITM)]
    stubs["isegm.data"].__path__ = [str(RITM / "data")]
    stubs["isegm.data.sample"].DSample = object  # used only as a type annotation
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("isegm.data.points_sampler", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


class OneObject:
    """The part of RITM's DSample that MultiPointSampler reads, for one object."""

    def __init__(self, mask):
        self.mask = mask
        self.root_objects = [0]
        self._objects = {0: {"parent": None, "children": []}}

    def __len__(self):
        return 1

    def get_object_mask(self, obj_id):
        return self.mask

    def get_background_mask(self):
        return ~self.mask


def summarise(draws, gt):
    """Per draw: positives, negatives; over all: share of negatives in the border ring, mean
    boundary distance of positives."""
    dt = cv2.distanceTransform(np.pad(gt, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    ring = cv2.dilate(gt.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(np.ceil(0.1 * np.sqrt(gt.sum())))) > 0
    n_pos = np.array([sum(p for _, _, p in d) for d in draws])
    n_neg = np.array([sum(not p for _, _, p in d) for d in draws])
    negatives = [(y, x) for d in draws for y, x, p in d if not p]
    positives = [(y, x) for d in draws for y, x, p in d if p]
    assert all(gt[y, x] for y, x in positives) and not any(gt[y, x] for y, x in negatives)
    return {
        "n_pos": n_pos, "n_neg": n_neg,
        "ring": np.mean([ring[y, x] for y, x in negatives]),
        "depth": np.mean([dt[y, x] for y, x in positives]),
    }


def total_variation(a, b):
    top = max(a.max(), b.max()) + 1
    return 0.5 * np.abs(np.bincount(a, minlength=top) / len(a) - np.bincount(b, minlength=top) / len(b)).sum()


def test_first_clicks_follow_ritms_multipoint_sampler():
    module = ritm_points_sampler()
    gt = np.zeros((64, 64), bool)
    cv2.circle(gt.view(np.uint8), (28, 30), 14, 1, -1)
    # RITM's training scripts: MultiPointSampler(num_max_points=24, prob_gamma=0.80, ...).
    ritm = module.MultiPointSampler(24, prob_gamma=0.8)
    random.seed(0)
    np.random.seed(0)
    theirs = []
    for _ in range(DRAWS):
        ritm.sample_object(OneObject(gt))
        points = ritm.sample_points()  # 24 positive slots, then 24 negative ones; (-1, -1, -1) pads
        theirs.append([(y, x, slot < 24) for slot, (y, x, idx) in enumerate(points) if idx >= 0])
    rng = np.random.default_rng(0)
    ours = [[(c.y, c.x, c.is_positive) for c in FirstClickSampler().sample(gt, rng)] for _ in range(DRAWS)]
    a, b = summarise(theirs, gt), summarise(ours, gt)
    assert total_variation(a["n_pos"], b["n_pos"]) < 0.06 and total_variation(a["n_neg"], b["n_neg"]) < 0.06
    assert abs(a["n_pos"].mean() - b["n_pos"].mean()) < 0.25 and abs(a["n_neg"].mean() - b["n_neg"].mean()) < 0.3
    assert abs(a["ring"] - b["ring"]) < 0.03 and abs(a["depth"] - b["depth"]) < 0.3
    assert b["n_pos"].min() == 1 and b["n_neg"].min() == 0 and b["ring"] > 0.4  # not a single positive


def test_negative_first_clicks_stay_in_valid_pixels():
    gt = np.zeros((32, 32), bool)
    gt[4:20, 4:20] = True
    valid = np.zeros_like(gt)
    valid[:, :24] = True
    rng = np.random.default_rng(1)
    for _ in range(200):
        for click in FirstClickSampler().sample(gt, rng, valid):
            assert valid[click.y, click.x] and gt[click.y, click.x] == click.is_positive


def test_training_step_feeds_several_first_points_to_sam():
    model = load_model("vit_tiny", device="cpu", seed=1)
    apply_scenario(model, "md")
    data = TrainingData(TileSet.from_pairs([make_tile(0, 96), make_tile(1, 96)]), model, frozen_encoder=True)
    batch = torch.utils.data.default_collate([data[0], data[1]])
    seen = []
    handle = model.sam.prompt_encoder.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["points"][1]), with_kwargs=True)
    net = ClickTrainingModel(model, frozen_encoder=True, first_clicks=FinetuneConfig().first_clicks)
    net(batch["inputs"], batch["gt"], batch["valid"], 0, np.random.default_rng(3))
    handle.remove()
    labels = torch.cat(seen, dim=1)[0]
    assert (labels == 1).sum() >= 1 and len(seen) == 2
    assert max(len(s[0]) for s in seen) > 1  # several first points, padded to a common length
