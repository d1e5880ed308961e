"""The comparison runner: every method on every dataset, per-click records on disk, resumable.

Output folder layout (``out_dir``):

- ``records.csv``: one row per click (columns ``RECORD_COLUMNS``); a sample's rows are appended
  and flushed together once the sample is finished, so an interrupted run loses at most the
  sample in progress. A re-run skips the (dataset, method, sample) triples already complete and
  drops incomplete ones before continuing.
- ``settings.json``: ``max_clicks``, ``target_iou`` and ``pred_thr`` of the records; a re-run
  with other settings is refused (records made under different rules do not mix).
- ``summary.csv``, ``miou.csv`` and ``miou.png``: the table, mIoU@k curves and their plot, over
  every record in the folder (so methods run one at a time add up to one comparison).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from histoclick.evaluation.baselines import GrabCut, RegionGrowing
from histoclick.evaluation.metrics import PRED_THRESHOLD, miou_curve, nof, noc, seconds_per_click
from histoclick.evaluation.plots import plot_miou
from histoclick.evaluation.protocol import Dataset, Method, SampleRun, run_sample
from histoclick.files import atomic_path

RECORD_COLUMNS = [
    "dataset",
    "method",
    "sample",
    "click",  # 1-based
    "y",  # clicked row, tile pixels
    "x",  # clicked column, tile pixels
    "positive",  # 1 positive, 0 negative
    "iou",  # float32 value, written in full precision
    "model_seconds",  # the method's own time for this click
    "click_seconds",  # wall time: simulate the click, predict, threshold, IoU
    "set_image_seconds",  # per sample (repeated on each of its rows)
    "load_seconds",  # per sample: reading it from the dataset (repeated)
    "n_clicks",  # clicks run on this sample (repeated); marks a complete sample
]
NOC_THRESHOLDS = (0.80, 0.85, 0.90)
NOF_THRESHOLDS = (0.85, 0.90)
SUMMARY_COLUMNS = [
    *(f"NoC@{round(t * 100)}" for t in NOC_THRESHOLDS),
    *(f"NoF@{round(t * 100)}" for t in NOF_THRESHOLDS),
    "SPC (model)",
    "SPC (wall)",
]
BASELINES = {"region_growing": RegionGrowing, "grabcut": GrabCut}


def make_method(
    spec: str, *, device: str = "auto", cache_dir: str | os.PathLike | None = None
) -> Method:
    """Build a method from its name: ``region_growing``, ``grabcut``, or ``sam:<model>`` where
    ``<model>`` is anything :func:`histoclick.load_model` takes (``vit_b``, ``vit_tiny``, a
    checkpoint path). SAM methods are named ``sam:<model name or checkpoint stem>``, and
    ``sam:<run folder>/best`` for the ``best.pt`` / ``last.pt`` that ``histoclick finetune`` writes."""
    if spec in BASELINES:
        return BASELINES[spec]()
    kind, _, model_name = spec.partition(":")
    if kind == "sam" and model_name:
        from histoclick.evaluation.sam_method import SamMethod
        from histoclick.models import load_model

        model = load_model(model_name, device=device)
        label = model_name
        if os.sep in model_name or "." in model_name:
            path = Path(model_name)
            # finetune writes best.pt / last.pt into one folder per run: name them by the run.
            label = f"{path.parent.name}/{path.stem}" if path.stem in ("best", "last") else path.stem
        return SamMethod(model, name=f"sam:{label}", cache_dir=cache_dir)
    raise ValueError(
        f"unknown method {spec!r}: use {', '.join(BASELINES)}, or sam:<model> with a model name "
        "(vit_b, vit_l, vit_h, vit_tiny) or a checkpoint path, e.g. sam:vit_b"
    )


def evaluate(
    methods: Method | Sequence[Method],
    datasets: Dataset | Sequence[Dataset],
    out_dir: str | os.PathLike,
    *,
    max_clicks: int = 20,
    target_iou: float | None = None,
    limit: int | None = None,
    pred_thr: float = PRED_THRESHOLD,
    plot: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Run the click protocol for every method on every dataset and summarise.

    Args:
        methods: one method or several (distinct names).
        datasets: one dataset or several (distinct names).
        out_dir: output folder (see the module docstring); created if needed.
        max_clicks: clicks per sample (RITM: 20).
        target_iou: stop a sample once its IoU reaches this (None: always ``max_clicks``).
        limit: consider only the first ``limit`` samples of each dataset.
        pred_thr: probability threshold (RITM: 0.49).
        plot: write ``miou.png``.
        verbose: show a progress bar and print the summary table.

    Returns:
        The summary table of every record in ``out_dir``: index (dataset, method), columns
        ``SUMMARY_COLUMNS``; NoC is the mean over samples, NoF a count, SPC in seconds.
    """
    methods = [methods] if isinstance(methods, Method) else list(methods)
    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if not methods or not datasets:
        raise ValueError("evaluate needs at least one method and one dataset")
    for kind, names in (("method", [m.name for m in methods]), ("dataset", [d.name for d in datasets])):
        if len(set(names)) != len(names):
            raise ValueError(f"{kind} names must be distinct (records are keyed by them): {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"max_clicks": max_clicks, "target_iou": target_iou, "pred_thr": pred_thr})
    records_path = out_dir / "records.csv"
    done = _complete_samples(records_path)

    with open(records_path, "a", newline="") as records_file:
        writer = csv.writer(records_file)
        for dataset in datasets:
            done_by = {m.name: done.get((dataset.name, m.name), set()) for m in methods}
            done_by_all = set.intersection(*done_by.values())
            candidates = dataset.sample_ids[:limit]
            progress = tqdm(
                total=len(candidates),
                initial=sum(sample_id in done_by_all for sample_id in candidates),
                desc=dataset.name,
                unit="sample",
                disable=not verbose,
            )
            samples = dataset.samples(exclude=done_by_all, limit=limit)
            skipped = 0
            while True:
                start = time.perf_counter()
                sample = next(samples, None)
                load_seconds = time.perf_counter() - start
                progress.update(dataset.skipped - skipped)  # empty-mask samples passed over
                skipped = dataset.skipped
                if sample is None:
                    break
                for method in methods:
                    if sample.id in done_by[method.name]:
                        continue
                    run = run_sample(method, sample, max_clicks, target_iou, pred_thr)
                    writer.writerows(_rows(dataset.name, method.name, sample.id, run, load_seconds))
                    records_file.flush()
                    os.fsync(records_file.fileno())
                progress.update(1)
            progress.close()
            if verbose and dataset.skipped:
                print(f"{dataset.name}: {dataset.skipped} sample(s) with an empty mask skipped")

    records = load_records(records_path)
    summary = summarize(records, max_clicks)
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp)
    curves = miou_curves(records, max_clicks)
    with atomic_path(out_dir / "miou.csv") as tmp:
        curves.to_csv(tmp)
    if plot and not curves.empty:
        plot_miou(curves, out_dir / "miou.png", title=f"mIoU vs clicks (max {max_clicks})")
    if verbose:
        print(format_summary(summary))
    return summary


def load_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``records.csv``: names stay strings (even "NA"), numbers are numbers (NaN where a
    field is missing), and IoUs come back as float32, exactly as they were computed."""
    return _typed(pd.read_csv(path, dtype=str, keep_default_na=False))


def _typed(raw: pd.DataFrame) -> pd.DataFrame:
    records = raw.copy()
    for column in RECORD_COLUMNS[3:]:
        if column in records:
            records[column] = pd.to_numeric(records[column], errors="coerce")
    if "iou" in records:
        records["iou"] = records["iou"].astype(np.float32)
    return records


def summarize(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """The study's table: one row per (dataset, method), columns ``SUMMARY_COLUMNS``.

    SPC (model) is the method's own seconds over all clicks; SPC (wall) is RITM's definition,
    the whole loop's wall time (loading, ``set_image`` and every click) over all clicks.
    """
    rows = {}
    for key, group in records.groupby(["dataset", "method"], sort=False):
        per_sample = [g for _, g in group.groupby("sample", sort=False)]
        ious = [g["iou"].to_numpy(np.float32) for g in per_sample]
        n_clicks = len(group)
        setup = sum(g["set_image_seconds"].iloc[0] + g["load_seconds"].iloc[0] for g in per_sample)
        row = {}
        for t in NOC_THRESHOLDS:
            row[f"NoC@{round(t * 100)}"] = np.mean([noc(i, t, max_clicks) for i in ious])
        for t in NOF_THRESHOLDS:
            row[f"NoF@{round(t * 100)}"] = nof([noc(i, t, max_clicks) for i in ious], max_clicks)
        row["SPC (model)"] = seconds_per_click(group["model_seconds"].sum(), n_clicks)
        row["SPC (wall)"] = seconds_per_click(setup + group["click_seconds"].sum(), n_clicks)
        rows[key] = row
    index = pd.MultiIndex.from_arrays(
        [[k[0] for k in rows], [k[1] for k in rows]], names=["dataset", "method"]
    )
    return pd.DataFrame(list(rows.values()), index=index, columns=SUMMARY_COLUMNS)


def miou_curves(records: pd.DataFrame, max_clicks: int = 20) -> pd.DataFrame:
    """mIoU after k = 1..max_clicks clicks: index ``click``, columns (dataset, method)."""
    curves = {
        key: miou_curve(
            [g["iou"].to_numpy(np.float32) for _, g in group.groupby("sample", sort=False)],
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
    """The summary as a fixed-width text table (NoC and SPC to 2 and 3 decimals)."""
    formatters = {c: "{:.2f}".format for c in summary.columns if c.startswith("NoC")}
    formatters.update({c: "{:.3f}".format for c in summary.columns if c.startswith("SPC")})
    return summary.to_string(formatters=formatters)


def _rows(dataset: str, method: str, sample_id: str, run: SampleRun, load_seconds: float) -> list:
    return [
        [
            dataset,
            method,
            sample_id,
            k,
            click.y,
            click.x,
            int(click.is_positive),
            repr(float(run.ious[k - 1])),
            run.model_seconds[k - 1],
            run.click_seconds[k - 1],
            run.set_image_seconds,
            load_seconds,
            len(run.clicks),
        ]
        for k, click in enumerate(run.clicks, start=1)
    ]


def _complete_samples(path: Path) -> dict[tuple[str, str], set[str]]:
    """Sample ids with complete records per (dataset, method); incomplete rows are dropped
    from the file (atomically) so that appending continues a clean table."""
    if not path.exists() or path.stat().st_size == 0:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(RECORD_COLUMNS)
        return {}
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(
            f"{path} is not a histoclick records file ({err}); move it away or choose another "
            "output folder"
        ) from None
    if list(raw.columns) != RECORD_COLUMNS:
        raise ValueError(
            f"{path} has columns {list(raw.columns)}, expected {RECORD_COLUMNS}; it was "
            "written by another tool or version: choose another output folder"
        )
    records = _typed(raw)
    keys = ["dataset", "method", "sample"]
    by_sample = records.groupby(keys, sort=False)["click"]
    complete = (
        records[RECORD_COLUMNS].notna().all(axis=1)
        & by_sample.transform("size").eq(records["n_clicks"])
        & by_sample.transform("max").eq(records["n_clicks"])
    )
    complete = complete.groupby([records[k] for k in keys], sort=False).transform("all")
    if not complete.all():
        with atomic_path(path) as tmp:
            raw[complete].to_csv(tmp, index=False)  # the kept rows' text, unchanged
    done: dict[tuple[str, str], set[str]] = {}
    for (dataset, method, sample), _ in records[complete].groupby(keys, sort=False):
        done.setdefault((dataset, method), set()).add(sample)
    return done


def _check_settings(out_dir: Path, settings: dict) -> None:
    path = out_dir / "settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != settings:
            raise ValueError(
                f"the records in {out_dir} were made with {saved}, not {settings}: rerun with "
                "those settings to resume, or choose another output folder"
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
