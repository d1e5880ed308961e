"""Adapter for the predictors of RITM, FocalClick and SimpleClick (the ``isegm`` code base).

histoclick does not depend on those projects. :func:`histoclick.evaluation.peers.load_peer`
(``--methods ritm:CKPT focalclick:CKPT simpleclick:CKPT``) builds a predictor from a checkout of
their code and a checkpoint, as each project's ``scripts/evaluate_model.py`` does, and wraps it
here. A predictor built by hand works too::

    from isegm.inference import utils
    from isegm.inference.predictors import get_predictor
    model = utils.load_is_model("coco_lvis_h18_itermask.pth", "cuda")
    predictor = get_predictor(model, "NoBRS", "cuda", prob_thresh=0.49)
    evaluate(IsegmMethod(predictor, name="ritm:hrnet18"), dataset, "runs/ritm")

The adapter converts histoclick's clicks into ``isegm.inference.clicker.Click`` objects (coords
``(y, x)``) held by an ``isegm`` ``Clicker``, so the predictor sees exactly what their own
evaluation feeds it, and runs it under ``torch.no_grad()`` as their ``evaluate_sample`` does.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Prediction


class IsegmMethod:
    """Wrap an ``isegm`` predictor (``set_input_image(image)``, ``get_prediction(clicker)``).

    ``predict`` rebuilds the clicker from all clicks so far and calls ``get_prediction``; the
    predictor keeps its own previous prediction (reset by ``set_input_image``), so
    ``prev_probs`` is not used. The answer is the predictor's probabilities clipped to [0, 1]
    (which keeps RITM's 0.49 threshold), or, with ``pred_thr``, the mask at that threshold as
    0/1 (for a project that publishes another threshold: FocalClick's 0.5).
    ``model_seconds`` is the wall time of ``get_prediction`` (the predictor copies its output
    to the CPU, which waits for the GPU): the whole network runs on every click.

    Args:
        predictor: the object ``isegm.inference.predictors.get_predictor`` returned.
        name: method name in tables, e.g. ``"ritm:hrnet18"`` or ``"simpleclick:vit_b"``.
        clicker_module: the module that defines ``Click`` and ``Clicker`` (theirs), or its name.
        weights: full digest of the checkpoint, recorded with every row ("" when unknown).
        pred_thr: binarise the probabilities at this threshold (None: return them).
        modules: the project's ``isegm`` modules (``sys.modules`` entries), made current while
            the predictor runs, so several projects (each a top-level ``isegm``) share a process.
    """

    def __init__(
        self,
        predictor: Any,
        name: str = "isegm",
        clicker_module: str | ModuleType = "isegm.inference.clicker",
        *,
        weights: str = "",
        pred_thr: float | None = None,
        modules: Mapping[str, ModuleType] | None = None,
    ) -> None:
        self.predictor = predictor
        self.name = name
        self.clicker_module = clicker_module
        self.weights = weights
        self.pred_thr = pred_thr
        self.modules = dict(modules or {})

    def set_image(self, image: np.ndarray) -> None:
        with self._running():
            self.predictor.set_input_image(image)

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        with self._running():
            clicker = self._clicker(clicks)
            start = time.perf_counter()
            probs = self.predictor.get_prediction(clicker)
            seconds = time.perf_counter() - start
        probs = np.asarray(probs, dtype=np.float32)
        if self.pred_thr is not None:
            return Prediction((probs > self.pred_thr).astype(np.float32), seconds)
        return Prediction(np.clip(probs, 0.0, 1.0), seconds)

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        import torch

        saved = {name: sys.modules.get(name) for name in self.modules}
        sys.modules.update(self.modules)
        try:
            with torch.no_grad():
                yield
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module

    def _clicker(self, clicks: list[Click]) -> Any:
        module = self.clicker_module
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ImportError as err:
                raise ImportError(
                    f"IsegmMethod needs {module!r} from RITM, FocalClick or SimpleClick: "
                    "install that project (or add its folder to PYTHONPATH) in this environment"
                ) from err
        clicker = module.Clicker()
        for click in clicks:
            clicker.add_click(
                module.Click(is_positive=click.is_positive, coords=(int(click.y), int(click.x)))
            )
        return clicker
