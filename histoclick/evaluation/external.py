"""Adapter for the predictors of RITM, FocalClick and SimpleClick (the ``isegm`` code base).

histoclick does not depend on those projects. Build the predictor with their own code and
weights, then wrap it::

    # in an environment where RITM (or FocalClick / SimpleClick) is importable as ``isegm``
    from isegm.inference import utils
    from isegm.inference.predictors import get_predictor
    model = utils.load_is_model("coco_lvis_h18_itermask.pth", "cuda")
    predictor = get_predictor(model, "NoBRS", "cuda", prob_thresh=0.49)

    from histoclick.evaluation import IsegmMethod, evaluate
    evaluate(IsegmMethod(predictor, name="ritm:hrnet18"), dataset, "runs/ritm")

(FocalClick's ``get_predictor`` takes extra arguments such as ``infer_size`` and ``focus_crop_r``;
build it as its ``scripts/evaluate_model.py`` does.) The adapter converts histoclick's clicks into
``isegm.inference.clicker.Click`` objects (coords ``(y, x)``) held by an ``isegm`` ``Clicker``,
so the predictor sees exactly what their own evaluation feeds it.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Prediction


class IsegmMethod:
    """Wrap an ``isegm`` predictor (``set_input_image(image)``, ``get_prediction(clicker)``).

    ``predict`` rebuilds the clicker from all clicks so far and calls ``get_prediction``; the
    predictor keeps its own previous prediction (reset by ``set_input_image``), so
    ``prev_probs`` is not used. The answer is what their ``evaluate_sample`` thresholds at 0.49,
    clipped to [0, 1] (which keeps that threshold). ``model_seconds`` is the wall time of
    ``get_prediction`` (the predictor copies its output to the CPU, which waits for the GPU).

    Args:
        predictor: the object ``isegm.inference.predictors.get_predictor`` returned.
        name: method name in tables, e.g. ``"ritm:hrnet18"`` or ``"simpleclick:vit_b"``.
        clicker_module: module that defines ``Click`` and ``Clicker`` (theirs, by default).
    """

    def __init__(
        self, predictor: Any, name: str = "isegm", clicker_module: str = "isegm.inference.clicker"
    ) -> None:
        self.predictor = predictor
        self.name = name
        self.clicker_module = clicker_module

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_input_image(image)

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        clicker = self._clicker(clicks)
        start = time.perf_counter()
        probs = self.predictor.get_prediction(clicker)
        seconds = time.perf_counter() - start
        return Prediction(np.clip(np.asarray(probs, dtype=np.float32), 0.0, 1.0), seconds)

    def _clicker(self, clicks: list[Click]) -> Any:
        try:
            module = importlib.import_module(self.clicker_module)
        except ImportError as err:
            raise ImportError(
                f"IsegmMethod needs {self.clicker_module!r} from RITM, FocalClick or SimpleClick: "
                "install that project (or add its folder to PYTHONPATH) in this environment"
            ) from err
        clicker = module.Clicker()
        for click in clicks:
            clicker.add_click(
                module.Click(is_positive=click.is_positive, coords=(int(click.y), int(click.x)))
            )
        return clicker
