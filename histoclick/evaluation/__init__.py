"""The evaluation protocol of RITM, FocalClick and SimpleClick, for histoclick's methods.

Click simulation (:func:`next_click`), metrics (NoC, NoF, mIoU@k, seconds per click), the
per-sample loop (:func:`run_sample`), the method and dataset protocols, weight-free baselines,
SAM through ClickSession, an adapter for ``isegm`` predictors, and the resumable runner
(:func:`evaluate`). Importing this package does not import torch.
"""

from histoclick.evaluation.baselines import GrabCut, RegionGrowing
from histoclick.evaluation.clicker import next_click
from histoclick.evaluation.external import IsegmMethod
from histoclick.evaluation.metrics import PRED_THRESHOLD, iou, miou_curve, nof, noc, seconds_per_click
from histoclick.evaluation.plots import plot_miou
from histoclick.evaluation.protocol import (
    Dataset,
    Method,
    Prediction,
    Sample,
    SampleRun,
    Subset,
    run_sample,
)
from histoclick.evaluation.runner import (
    RECORD_COLUMNS,
    SUMMARY_COLUMNS,
    evaluate,
    format_summary,
    load_records,
    make_method,
    miou_curves,
    summarize,
)
from histoclick.evaluation.sam_method import SamMethod

__all__ = [
    "PRED_THRESHOLD",
    "RECORD_COLUMNS",
    "SUMMARY_COLUMNS",
    "Dataset",
    "GrabCut",
    "IsegmMethod",
    "Method",
    "Prediction",
    "RegionGrowing",
    "Sample",
    "SampleRun",
    "SamMethod",
    "Subset",
    "evaluate",
    "format_summary",
    "iou",
    "load_records",
    "make_method",
    "miou_curve",
    "miou_curves",
    "next_click",
    "noc",
    "nof",
    "plot_miou",
    "run_sample",
    "seconds_per_click",
    "summarize",
]
