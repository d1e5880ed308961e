"""The study's peers, RITM, FocalClick and SimpleClick, run from their own code and checkpoints.

``--methods ritm:CKPT focalclick:CKPT simpleclick:CKPT`` (:func:`load_peer`) imports the
project's ``isegm`` package from a checkout the user supplies (the folder holding ``isegm/``:
``--isegm-root DIR`` for one project, ``--isegm-root ritm=DIR focalclick=DIR ...`` for several, or
``$HISTOCLICK_RITM_ROOT`` / ``$HISTOCLICK_FOCALCLICK_ROOT`` / ``$HISTOCLICK_SIMPLECLICK_ROOT``, else
``$HISTOCLICK_ISEGM_ROOT``), loads the checkpoint with
``torch.load(weights_only=True)`` and hands the dict to the project's own ``load_is_model``, then
builds the predictor exactly as the project's ``scripts/evaluate_model.py`` does by default.
histoclick's runner then plays RITM's ``evaluate_sample`` loop with it. Details that are the
projects' own, not histoclick's:

- RITM (SamsungLabs/ritm_interactive_segmentation): ``NoBRS`` predictor with horizontal-flip
  averaging (``get_predictor``'s ``with_flip=True``), ZoomIn in the ``cvpr`` mode (``target_size``
  400, the first click on the whole image), threshold 0.49.
- FocalClick (XavierCHEN34/ClickSEG): the ``FocalClick`` predictor, which segments a target crop
  resized to ``infer_size`` 256 and then refines a focus crop around the last click
  (``focus_crop_r`` 1.4); ZoomIn ``cvpr`` with ``expansion_ratio`` 1.4; threshold 0.5 (the
  published ``--thresh 0.5``), applied by the method. FocalClick's progressive merge
  (``Progressive_Merge`` in its ``evaluate_sample``) only runs when a sample comes with an
  initial mask (``num_pm = 0``); without one, as in this protocol and on its standard
  benchmarks, ``num_pm = 999`` switches it off, so the plain loop is FocalClick's loop.
- SimpleClick (uncbiag/SimpleClick): ``NoBRS`` with flip, ZoomIn from the first click
  (``skip_clicks -1``) to a fixed (448, 448) input, the ViT's positional embedding interpolated
  to it (``interpolate_pos_embed_inference``), threshold 0.49.

The three projects all name their package ``isegm``; each loaded peer keeps its own modules and
puts them in place while it runs, so one evaluation can compare all three.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from histoclick.evaluation.external import IsegmMethod

ISEGM_ROOT_ENV = "HISTOCLICK_ISEGM_ROOT"


class PeerUnavailable(ValueError):
    """A peer cannot run: its code or its checkpoint is missing. The message says what to supply."""


@dataclass(frozen=True)
class Peer:
    """How one project evaluates (its ``scripts/evaluate_model.py`` defaults)."""

    name: str
    title: str
    repository: str
    mode: str  # get_predictor's brs_mode
    zoom_in: dict
    predictor: dict  # further get_predictor arguments
    pred_thr: float | None  # their threshold when it is not RITM's 0.49
    # Their checkpoints' configs pickle these objects of their own code (module, names); they
    # are allowed to torch.load(weights_only=True), nothing else is.
    safe_globals: tuple[str, tuple[str, ...]] | None = None


PEERS = {
    "ritm": Peer(
        "ritm", "RITM", "https://github.com/SamsungLabs/ritm_interactive_segmentation",
        "NoBRS", {"target_size": 400}, {"prob_thresh": 0.49}, None,
    ),
    "focalclick": Peer(
        "focalclick", "FocalClick", "https://github.com/XavierCHEN34/ClickSEG",
        "FocalClick", {"target_size": 400, "expansion_ratio": 1.4},
        {"prob_thresh": 0.5, "infer_size": 256, "focus_crop_r": 1.4}, 0.5,
    ),
    "simpleclick": Peer(
        "simpleclick", "SimpleClick", "https://github.com/uncbiag/SimpleClick",
        "NoBRS", {"skip_clicks": -1, "target_size": (448, 448)}, {"prob_thresh": 0.49}, None,
        # head_params' loss_decode=CrossEntropyLoss() (models/iter_mask/plainvit_*.py)
        ("isegm.model.modeling.transformer_helper.cross_entropy_loss", ("CrossEntropyLoss", "cross_entropy")),
    ),
}


def load_peer(
    spec: str,
    isegm_root: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    device: str = "auto",
) -> IsegmMethod:
    """Build ``ritm:CKPT``, ``focalclick:CKPT`` or ``simpleclick:CKPT`` as a method.

    Args:
        spec: project name and checkpoint path, e.g. ``"ritm:coco_lvis_h18_itermask.pth"``.
        isegm_root: the project's checkout (the folder holding ``isegm/``), or checkouts by
            project name (``{"ritm": ..., "simpleclick": ...}``); default
            ``$HISTOCLICK_<PROJECT>_ROOT``, then ``$HISTOCLICK_ISEGM_ROOT``.
        device: torch device (``"auto"``: CUDA, then MPS, then CPU).

    Returns:
        An :class:`IsegmMethod` named ``<project>:<checkpoint stem>@<SHA-256 prefix>``.

    Raises:
        PeerUnavailable: no code or no checkpoint, with one line saying what to supply.
    """
    import torch

    from histoclick.evaluation.naming import checkpoint_method_name
    from histoclick.models import resolve_device, sha256_of

    name, _, checkpoint = spec.partition(":")
    peer = PEERS[name]
    if isinstance(isegm_root, Mapping):
        isegm_root = isegm_root.get(name)
    root = isegm_root or os.environ.get(f"HISTOCLICK_{name.upper()}_ROOT") or os.environ.get(ISEGM_ROOT_ENV)
    root = Path(root).expanduser() if root else None
    if not root or not (root / "isegm").is_dir():
        where = f"{root} has no isegm/ folder" if root else "no code given"
        raise PeerUnavailable(
            f"{spec} needs {peer.title}'s code ({where}): pass --isegm-root {name}=DIR (or set "
            f"HISTOCLICK_{name.upper()}_ROOT) to a checkout of {peer.repository}, the folder "
            "holding isegm/"
        )
    path = Path(checkpoint).expanduser()
    if not checkpoint or not path.is_file():
        raise PeerUnavailable(
            f"{spec} needs a {peer.title} checkpoint file: {path if checkpoint else 'none given'} "
            f"does not exist; download one listed in {peer.repository} and give its path"
        )
    modules = import_isegm(root)
    torch_device = resolve_device(device)
    allowed = []
    if peer.safe_globals is not None:
        module = importlib.import_module(peer.safe_globals[0])
        allowed = [getattr(module, name) for name in peer.safe_globals[1]]
    with torch.serialization.safe_globals(allowed):
        content = torch.load(path, map_location="cpu", weights_only=True)
    utils = modules["isegm.inference.utils"]
    if peer.name == "simpleclick":
        model = utils.load_is_model(content, torch_device, False)  # eval_ritm=False
        pos_embed = importlib.import_module("isegm.model.modeling.pos_embed")
        pos_embed.interpolate_pos_embed_inference(model.backbone, peer.zoom_in["target_size"], torch_device)
    else:
        model = utils.load_is_model(content, torch_device)
    predictors = importlib.import_module("isegm.inference.predictors")
    predictor = predictors.get_predictor(
        model, peer.mode, torch_device, zoom_in_params=dict(peer.zoom_in), **peer.predictor
    )
    digest = sha256_of(path)
    return IsegmMethod(
        predictor,
        name=checkpoint_method_name(peer.name, path, digest),
        clicker_module=modules["isegm.inference.clicker"],
        weights=digest,
        pred_thr=peer.pred_thr,
        modules=_isegm_modules(),
    )


def import_isegm(root: Path) -> dict[str, ModuleType]:
    """Import the ``isegm`` package of the checkout ``root`` (replacing another project's
    ``isegm`` in ``sys.modules``) with the inference modules the evaluation uses; returns
    them by name.

    Their code predates NumPy 1.24: the aliases it uses (``np.int``, ``np.float``) are given back
    to NumPy as the builtins they always were, when missing.
    """
    for alias, builtin in (("int", int), ("float", float)):
        if alias not in np.__dict__:
            setattr(np, alias, builtin)
    root = root.resolve()
    current = sys.modules.get("isegm")
    if current is not None and not any(Path(p).resolve() == root / "isegm" for p in current.__path__):
        for name in list(_isegm_modules()):
            del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        names = ["isegm.inference.clicker", "isegm.inference.utils", "isegm.inference.predictors",
                 "isegm.inference.evaluation"]
        return {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(root))


def _isegm_modules() -> dict[str, ModuleType]:
    return {
        name: module
        for name, module in sys.modules.items()
        if (name == "isegm" or name.startswith("isegm.")) and module is not None
    }
