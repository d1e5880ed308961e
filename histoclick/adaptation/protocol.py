"""The evaluation protocol of online adaptation (``histoclick evaluate --adapt md|enhanced``).

Samples are annotated in the dataset's fixed order, as a user would, each with RITM's simulated
clicks (:func:`~histoclick.evaluation.run_sample`), twice: by the static base model and by the
adapting one. After each sample the adaptive run's final mask is accepted (the ground truth when
the target IoU was reached, as the user would correct it; else the final prediction, or always
the ground truth with ``accept="gt"``) and a refit runs synchronously, so the run is
deterministic with a seed. Both runs see the same samples in the same order.

Writes to ``out_dir``: ``adaptive_samples.csv`` (one row per sample: NoC@80/85/90 of both runs,
what was accepted, whether the refit was adopted), ``adaptive_summary.csv`` (NoC@80/85/90 of
both, and NoC@90 over the first and the last 10 samples), ``noc_sequence.png`` (NoC@90 along
the sequence) and ``adapted-decoder.pt`` (the final decoder, a checkpoint ``load_model`` takes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from histoclick.adaptation.engine import AdaptConfig, Adapter
from histoclick.adaptation.store import save_decoder
from histoclick.evaluation.metrics import PRED_THRESHOLD, noc
from histoclick.evaluation.plots import _save as save_figure  # the comparison figures' writer
from histoclick.evaluation.protocol import Dataset, run_sample
from histoclick.evaluation.runner import validate_settings
from histoclick.evaluation.sam_method import SamMethod
from histoclick.files import atomic_path
from histoclick.models.sam_model import SamModel
from histoclick.session import ClickSession

THRESHOLDS = (0.80, 0.85, 0.90)
WINDOW = 10  # samples at the start and at the end of the sequence compared


@dataclass
class AdaptiveRun:
    """samples: the per-sample table; summary: index ``static`` / ``adaptive`` (method names in
    column ``method``), NoC columns; adapter: the adapter after the last sample; plot: the PNG."""

    samples: pd.DataFrame
    summary: pd.DataFrame
    adapter: Adapter
    plot: Path | None


def evaluate_adaptive(
    model: SamModel,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    *,
    config: AdaptConfig = AdaptConfig(time_budget_s=None),
    max_clicks: int = 20,
    target_iou: float = 0.9,
    limit: int | None = None,
    accept: Literal["reached", "gt"] = "reached",
    cache_dir: str | os.PathLike | None = None,
    plot: bool = True,
    verbose: bool = True,
) -> AdaptiveRun:
    """Annotate ``dataset`` in order with the static ``model`` and with an online-adapted copy.

    Args:
        model: the base model (unchanged).
        config: adaptation settings; keep ``time_budget_s=None`` for a deterministic run.
        max_clicks: clicks per sample. target_iou: a sample stops there (and its ground truth
            is accepted).
        limit: the first ``limit`` samples only. accept: ``"reached"`` (see the module
            docstring) or ``"gt"`` (the ground truth always: a user who corrects every mask).
        cache_dir: embedding cache folder.
    """
    if accept not in ("reached", "gt"):
        raise ValueError(f"accept must be 'reached' or 'gt', got {accept!r}")
    validate_settings(max_clicks, target_iou, limit, PRED_THRESHOLD)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter = Adapter(model, config, cache_dir=cache_dir, background=False)
    static = SamMethod(model, cache_dir=cache_dir)
    adaptive_name = f"{static.name}+adapt-{config.scenario}"
    rows = []
    candidates = dataset.sample_ids[:limit]
    for order, sample in enumerate(tqdm(dataset.samples(limit=limit), total=len(candidates), disable=not verbose)):
        static_run = run_sample(static, sample, max_clicks, target_iou)
        adaptive_run = run_sample(
            SamMethod(adapter.model, name=adaptive_name, cache_dir=cache_dir), sample, max_clicks, target_iou
        )
        reached = adaptive_run.ious[-1] >= np.float32(target_iou)
        mask, accepted = (sample.gt, "gt") if reached or accept == "gt" else (adaptive_run.probs > PRED_THRESHOLD, "prediction")
        session = ClickSession(adapter.model, sample.image, cache_dir=cache_dir)  # the cached embedding
        try:
            adapter.accept(session, mask, ignore=sample.ignore)
        except ValueError:  # an empty final prediction: nothing to learn from
            accepted = "none"
        status = adapter.refit_now() if accepted != "none" else adapter.status
        rows.append({
            "order": order, "sample_id": sample.id,
            **{f"static NoC@{round(t * 100)}": noc(static_run.ious, t, max_clicks) for t in THRESHOLDS},
            **{f"adaptive NoC@{round(t * 100)}": noc(adaptive_run.ious, t, max_clicks) for t in THRESHOLDS},
            "accepted": accepted, "adopted": status.adopted, "refit_seconds": status.last_refit_seconds,
        })
    if not rows:
        raise ValueError(f"{dataset.name} has no sample with an object: nothing to annotate")
    samples = pd.DataFrame(rows)
    summary = summarize_adaptive(samples, {"static": static.name, "adaptive": adaptive_name})
    with atomic_path(out_dir / "adaptive_samples.csv") as tmp:
        samples.to_csv(tmp, index=False)
    with atomic_path(out_dir / "adaptive_summary.csv") as tmp:
        summary.to_csv(tmp)
    save_decoder(adapter, out_dir / "adapted-decoder.pt")
    png = plot_noc_sequence(samples, out_dir / "noc_sequence.png", title=f"{dataset.name}: NoC@90 along the sequence") if plot else None
    if verbose:
        print(summary.to_string(float_format=lambda v: f"{v:.2f}"))
    return AdaptiveRun(samples, summary, adapter, png)


def summarize_adaptive(samples: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Mean NoC@80/85/90 of the static and the adaptive run, and NoC@90 over the first and the
    last ``WINDOW`` samples of the sequence (index ``static``, ``adaptive``)."""
    table = {}
    for run, name in names.items():
        row = {"method": name, "samples": len(samples)}
        for t in THRESHOLDS:
            row[f"NoC@{round(t * 100)}"] = samples[f"{run} NoC@{round(t * 100)}"].mean()
        row[f"NoC@90 first {WINDOW}"] = samples[f"{run} NoC@90"].head(WINDOW).mean()
        row[f"NoC@90 last {WINDOW}"] = samples[f"{run} NoC@90"].tail(WINDOW).mean()
        table[run] = row
    return pd.DataFrame.from_dict(table, orient="index")


def plot_noc_sequence(samples: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """PNG of NoC@90 per sample along the annotation order, static and adaptive, with the means
    of the first and the last ``WINDOW`` samples as horizontal segments."""
    figure = Figure(figsize=(7.0, 4.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    order = samples["order"].to_numpy() + 1
    for run, colour in (("static", "tab:gray"), ("adaptive", "tab:blue")):
        values = samples[f"{run} NoC@90"].to_numpy(float)
        ax.plot(order, values, marker="o", markersize=3, color=colour, alpha=0.6, label=run)
        for part in (slice(0, WINDOW), slice(max(len(values) - WINDOW, 0), len(values))):
            ax.hlines(values[part].mean(), order[part][0], order[part][-1], colors=colour, linewidth=3)
    ax.set_xlabel("Sample (annotation order)")
    ax.set_ylabel(f"NoC@90 (thick: mean of first/last {WINDOW})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return save_figure(figure, path, title)


def run_from_args(args, datasets: list[Dataset]) -> int:
    """``histoclick evaluate --adapt``: :func:`evaluate_adaptive` of the one ``sam:`` method on
    each dataset, into ``--out`` (one sub-folder per dataset when there are several)."""
    from histoclick.models import load_model

    specs = [spec for spec in args.methods if spec.startswith("sam:")]
    if len(specs) != 1 or len(args.methods) != 1:
        raise ValueError(
            f"--adapt adapts one SAM model, but --methods is {' '.join(args.methods)}: give exactly "
            "one, e.g. --methods sam:vit_b (its static run is the comparison)"
        )
    model = load_model(specs[0].partition(":")[2], device=args.device)
    config = AdaptConfig(scenario=args.adapt, steps=args.adapt_steps, seed=args.adapt_seed, time_budget_s=None)
    for i, dataset in enumerate(datasets):
        out = args.out if len(datasets) == 1 else args.out / f"{i:02d}-{_safe(dataset.name)}"
        evaluate_adaptive(
            model, dataset, out, config=config, max_clicks=args.max_clicks,
            target_iou=args.target_iou if args.target_iou is not None else 0.9, limit=args.limit,
            cache_dir=args.cache_dir, plot=not args.no_plot,
        )
        print(f"adaptive vs static: {out / 'adaptive_summary.csv'} (per sample: adaptive_samples.csv)")
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
