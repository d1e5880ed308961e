"""The evaluation protocol of RITM, FocalClick and SimpleClick, for histoclick's methods.

Click simulation (:func:`next_click`), metrics (NoC, NoF, mIoU@k, seconds per click), the
per-sample loop (:func:`run_sample`), the method and dataset protocols, weight-free baselines,
SAM through ClickSession, an adapter for ``isegm`` predictors, and the resumable runner
(:func:`evaluate`). Importing this package does not import torch.
"""

from histoclick.evaluation.baselines import GrabCut, RegionGrowing
from histoclick.evaluation.clicker import next_click
from histoclick.evaluation.external import IsegmMethod
from histoclick.evaluation.metrics import (
    PRED_THRESHOLD,
    boundary_f,
    harmful_click_rate,
    iou,
    miou_auc,
    miou_curve,
    nof,
    noc,
    paired_wilcoxon,
    seconds_per_click,
    slide_bootstrap_ci,
)
from histoclick.evaluation.plots import plot_miou, plot_noc_intervals
from histoclick.evaluation.protocol import (
    Dataset,
    Method,
    Prediction,
    Sample,
    SampleRun,
    Subset,
    run_sample,
)
from histoclick.evaluation.naming import method_name
from histoclick.evaluation.records import RECORD_COLUMNS, load_records
from histoclick.evaluation.runner import evaluate, make_method, validate_settings
from histoclick.evaluation.summary import (
    SUMMARY_COLUMNS,
    boundary_f_curves,
    format_summary,
    miou_curves,
    per_sample,
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
    "SamMethod",
    "Sample",
    "SampleRun",
    "Subset",
    "boundary_f",
    "boundary_f_curves",
    "evaluate",
    "format_summary",
    "harmful_click_rate",
    "iou",
    "load_records",
    "make_method",
    "method_name",
    "miou_auc",
    "miou_curve",
    "miou_curves",
    "next_click",
    "noc",
    "nof",
    "paired_wilcoxon",
    "per_sample",
    "plot_miou",
    "plot_noc_intervals",
    "run_sample",
    "seconds_per_click",
    "slide_bootstrap_ci",
    "summarize",
    "validate_settings",
]
