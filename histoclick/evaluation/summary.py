"""The study's table from per-click records: NoC / NoF, three seconds-per-click figures, and the
metrics the study said it lacked (boundary F, mIoU AUC, harmful clicks, slide-level bootstrap
intervals, a paired test between methods).

Seconds per click, three ways (column names say which):

- ``SPC (model; SAM family only)``: the method's own seconds per click (for SAM the prompt
  encoder and mask decoder; the embedding is excluded). Comparable only between SAM models:
  other methods run their whole network on every click.
- ``SPC (cold)``: the method's own seconds with its own image embedding counted on every sample
  (even where another method's cached embedding was reused), over all clicks: what one method
  costs run alone.
- ``SPC (RITM; the study's)``: RITM's definition (``isegm/inference/utils.get_time_metrics``):
  wall time over the dataset (loading, ``set_image`` with the embedding counted cold, every
  click) divided by the clicks run, each sample stopped once its IoU reaches 0.90 (RITM's
  ``--target-iou``). This is the figure the study's table reports next to RITM, FocalClick and
  SimpleClick.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from histoclick.evaluation.metrics import (
    harmful_click_rate,
    miou_auc,
    miou_curve,
    nof,
    noc,
    paired_wilcoxon,
    seconds_per_click,
    slide_bootstrap_ci,
)

NOC_THRESHOLDS = (0.80, 0.85, 0.90)
NOF_THRESHOLDS = (0.85, 0.90)
RITM_STOP_IOU = 0.90
SPC_MODEL, SPC_COLD, SPC_RITM = "SPC (model; SAM family only)", "SPC (cold)", "SPC (RITM; the study's)"
SUMMARY_COLUMNS = [
    *(f"NoC@{round(t * 100)}" for t in NOC_THRESHOLDS),
    *(f"NoF@{round(t * 100)}" for t in NOF_THRESHOLDS),
    "NoC@90 CI low",  # 95% bootstrap interval of NoC@90, resampling slides
    "NoC@90 CI high",
    "p NoC@90 vs best",  # Wilcoxon signed-rank test, paired by sample, against the best method
    "best method",  # the dataset's method with the lowest NoC@90
    "mIoU AUC",
    "harmful click rate",
    "boundary F",  # after the last click; the tolerance is in settings.json (boundary_um)
    SPC_MODEL,
    SPC_COLD,
    SPC_RITM,
]
SPC_NOTE = (
    f"{SPC_RITM}: RITM's wall time over the dataset / clicks, stopped at IoU {RITM_STOP_IOU:.2f}, "
    f"embeddings counted cold: the study's definition. {SPC_COLD}: each method's own model and "
    f"embedding seconds. {SPC_MODEL}: prompt encoder + decoder only, comparable within SAM."
)


def per_sample(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """One row per (dataset, method, sample): NoC@80/85/90, the IoUs (float32 array), the last
    boundary F, the group for bootstrap intervals (the slide, else the sample itself) and the
    seconds behind the three SPC figures."""
    rows = []
    for (dataset, method, sample), group in records.groupby(["dataset", "method", "sample"], sort=False):
        ious = group["iou"].to_numpy(np.float32)
        first = group.iloc[0]
        embed = float(first["embed_seconds"])
        reused = bool(first["embed_reused"])
        stop = noc(ious, RITM_STOP_IOU, len(ious))  # RITM's loop would have stopped here
        row = {
            "dataset": dataset,
            "method": method,
            "sample": sample,
            "group": first["slide"] or f"sample {sample}",
            "ious": ious,
            "boundary_f": float(group["boundary_f"].iloc[-1]),
            "clicks": len(ious),
            "model_seconds": float(group["model_seconds"].sum()),
            "embed_seconds": embed,
            "ritm_clicks": stop,
            "ritm_wall_seconds": float(first["load_seconds"] + first["set_image_seconds"])
            + float(group["click_seconds"].iloc[:stop].sum()),
            "reused": reused,
        }
        for t in NOC_THRESHOLDS:
            row[f"NoC@{round(t * 100)}"] = noc(ious, t, max_clicks)
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """The study's table: one row per (dataset, method), columns ``SUMMARY_COLUMNS`` (see the
    module docstring for the three SPC figures). NoC is the mean over samples, NoF a count,
    boundary F the mean after the last click (NaN without ``mpp`` in the samples' meta), mIoU
    AUC the normalised area under the mIoU@1..max_clicks curve, the harmful click rate the share
    of clicks (after the first) that lowered the IoU."""
    samples = per_sample(records, max_clicks)
    rows = {}
    for (dataset, method), group in samples.groupby(["dataset", "method"], sort=False):
        row: dict = {}
        for t in NOC_THRESHOLDS:
            row[f"NoC@{round(t * 100)}"] = group[f"NoC@{round(t * 100)}"].mean()
        for t in NOF_THRESHOLDS:
            row[f"NoF@{round(t * 100)}"] = nof(group[f"NoC@{round(t * 100)}"], max_clicks)
        row["NoC@90 CI low"], row["NoC@90 CI high"] = slide_bootstrap_ci(group["NoC@90"], group["group"])
        row["mIoU AUC"] = miou_auc(miou_curve(list(group["ious"]), max_clicks))
        row["harmful click rate"] = harmful_click_rate(list(group["ious"]))
        row["boundary F"] = group["boundary_f"].mean()
        clicks = int(group["clicks"].sum())
        embed = _cold_embedding_seconds(group)
        row[SPC_MODEL] = seconds_per_click(group["model_seconds"].sum(), clicks)
        row[SPC_COLD] = seconds_per_click(group["model_seconds"].sum() + embed.sum(), clicks)
        ritm_wall = group["ritm_wall_seconds"] + embed.where(group["reused"], 0.0)
        row[SPC_RITM] = seconds_per_click(ritm_wall.sum(), int(group["ritm_clicks"].sum()))
        rows[(dataset, method)] = row
    summary = pd.DataFrame(
        list(rows.values()),
        index=pd.MultiIndex.from_tuples(list(rows), names=["dataset", "method"]),
        columns=SUMMARY_COLUMNS,
    )
    summary["best method"] = summary["best method"].astype(object)
    _paired_tests(summary, samples)
    return summary


def _cold_embedding_seconds(group: pd.DataFrame) -> pd.Series:
    """Each sample's cold embedding seconds; an unknown one (the embedding came from an earlier
    process's disk cache) is the method's mean over the samples where it is known (same encoder
    and tile size: the same work)."""
    known = group["embed_seconds"].dropna()
    return group["embed_seconds"].fillna(known.mean() if len(known) else math.nan)


def _paired_tests(summary: pd.DataFrame, samples: pd.DataFrame) -> None:
    """Fill ``best method`` and ``p NoC@90 vs best``: per dataset, the method with the lowest
    NoC@90, and scipy's Wilcoxon signed-rank p-value of each other method's per-sample NoC@90
    against it, on the samples both ran."""
    for dataset, table in summary.groupby(level="dataset", sort=False):
        best = table["NoC@90"].idxmin()[1]
        nocs = samples[samples["dataset"] == dataset].pivot(index="sample", columns="method", values="NoC@90")
        for method in table.index.get_level_values("method"):
            pairs = nocs[[method, best]].dropna()
            summary.loc[(dataset, method), "best method"] = best
            summary.loc[(dataset, method), "p NoC@90 vs best"] = (
                math.nan if method == best else paired_wilcoxon(pairs[method], pairs[best])
            )


def miou_curves(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """mIoU after k = 1..max_clicks clicks: index ``click``, columns (dataset, method)."""
    return _curves(records, "iou", max_clicks)


def boundary_f_curves(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """Mean boundary F after k = 1..max_clicks clicks (a sample that stopped keeps its last
    score): index ``click``, columns (dataset, method); NaN where it was not computed."""
    return _curves(records, "boundary_f", max_clicks)


def _curves(records: pd.DataFrame, column: str, max_clicks: int) -> pd.DataFrame:
    curves = {
        key: miou_curve(
            [g[column].to_numpy(np.float64) for _, g in group.groupby("sample", sort=False)],
            max_clicks,
        )
        for key, group in records.groupby(["dataset", "method"], sort=False)
    }
    index = pd.RangeIndex(1, max_clicks + 1, name="click")
    if not curves:
        return pd.DataFrame(index=index)
    frame = pd.DataFrame(curves, index=index)
    frame.columns.names = ["dataset", "method"]
    return frame


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table, followed by what each SPC figure means."""
    formatters = {c: "{:.2f}".format for c in summary.columns if c.startswith("NoC")}
    formatters.update({c: "{:.3f}".format for c in summary.columns if c.startswith(("SPC", "p ", "mIoU", "harm", "bound"))})
    return summary.to_string(formatters=formatters) + "\n" + SPC_NOTE
