"""The comparison runner: every method on every dataset, per-click records on disk, resumable.

Output folder layout (``out_dir``):

- ``records.csv``: one row per click (see :mod:`histoclick.evaluation.records`); a sample's rows
  are appended and flushed together once the sample is finished, so an interrupted run loses at
  most the sample in progress. Records are keyed by content: a re-run skips a (dataset, method,
  sample) whose recorded image/mask fingerprint matches the sample's pixels now, recomputes one
  whose pixels changed (saying so), and refuses a method whose name was recorded with other
  weights. It repairs a cut last line and drops incomplete samples before continuing.
- ``settings.json``: ``max_clicks``, ``target_iou`` and ``pred_thr`` of the records, validated
  before anything is written; a re-run with other settings is refused (records made under
  different rules do not mix).
- ``summary.csv``, ``miou.csv`` and ``miou.png``: the table, mIoU@k curves and their plot, over
  every record in the folder (so methods run one at a time add up to one comparison).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from histoclick.evaluation.baselines import GrabCut, RegionGrowing
from histoclick.evaluation.metrics import PRED_THRESHOLD
from histoclick.evaluation.plots import plot_miou, plot_noc_intervals
from histoclick.evaluation.protocol import Dataset, Method, Sample, SampleRun, run_sample
from histoclick.evaluation.records import RecordsFile, csv_safe, load_records, sample_fingerprint
from histoclick.evaluation.summary import boundary_f_curves, format_summary, miou_curves, summarize
from histoclick.files import atomic_path

BASELINES = {"region_growing": RegionGrowing, "grabcut": GrabCut}


def make_method(
    spec: str,
    *,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    isegm_root: str | os.PathLike | None = None,
) -> Method:
    """Build a method from its name: ``region_growing``, ``grabcut``; ``sam:<model>`` where
    ``<model>`` is anything :func:`histoclick.load_model` takes (``vit_b``, ``vit_tiny``, a
    checkpoint path, a fine-tuned ``best.pt``); or a peer of the study, ``ritm:CKPT``,
    ``focalclick:CKPT``, ``simpleclick:CKPT``, run from the project's code in ``isegm_root``
    (see :mod:`histoclick.evaluation.peers`). SAM methods are named by
    :func:`~histoclick.evaluation.naming.method_name` (``sam:vit_b@ec2df627``,
    ``sam:vit_b+md@1a2b3c4d``), peers ``ritm:<checkpoint stem>@<SHA-256 prefix>``."""
    from histoclick.evaluation.peers import PEERS, load_peer

    if spec in BASELINES:
        return BASELINES[spec]()
    kind, _, model_name = spec.partition(":")
    if kind == "sam" and model_name:
        from histoclick.evaluation.sam_method import SamMethod
        from histoclick.models import load_model

        return SamMethod(load_model(model_name, device=device), cache_dir=cache_dir)
    if kind in PEERS:
        return load_peer(spec, isegm_root, device)
    raise ValueError(
        f"unknown method {spec!r}: use {', '.join(BASELINES)}; sam:<model> with a model name "
        "(vit_b, vit_l, vit_h, vit_t, vit_tiny) or a checkpoint path, e.g. sam:vit_b; or "
        f"{':CKPT, '.join(PEERS)}:CKPT with --isegm-root"
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
    boundary_um: float = 5.0,
    plot: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Run the click protocol for every method on every dataset and summarise.

    Args:
        methods: one method or several (distinct names). A method's optional ``weights``
            attribute (the full digest of its weights) is recorded with every row.
        datasets: one dataset or several (distinct names).
        out_dir: output folder (see the module docstring); created if needed.
        max_clicks: clicks per sample (RITM: 20), at least 1.
        target_iou: stop a sample once its IoU reaches this, in (0, 1] (None: always
            ``max_clicks``).
        limit: consider only the first ``limit`` samples of each dataset (at least 1).
        pred_thr: probability threshold (RITM: 0.49), in (0, 1).
        boundary_um: tolerance of the boundary F-score in micrometres (> 0), converted with each
            sample's ``meta["mpp"]``; samples without it get no boundary F.
        plot: write ``miou.png``, ``boundary_f.png`` and ``noc90.png``.
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
    settings = validate_settings(max_clicks, target_iou, limit, pred_thr, boundary_um)
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(
            f"the output folder {out_dir} is a file: give a folder path (it is created if missing)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {k: v for k, v in settings.items() if k != "limit"})
    records_path = out_dir / "records.csv"

    with RecordsFile(records_path) as records_file:
        for line in records_file.repairs:
            print(line)
        _check_weights(records_file, methods, records_path)
        for dataset in datasets:
            candidates = dataset.sample_ids[:limit]
            progress = tqdm(total=len(candidates), desc=dataset.name, unit="sample", disable=not verbose)
            # Every sample is loaded, also finished ones: their pixels decide whether the
            # records still hold.
            samples = dataset.samples(limit=limit)
            skipped = 0
            while True:
                start = time.perf_counter()
                sample = next(samples, None)
                load_seconds = time.perf_counter() - start
                progress.update(dataset.skipped - skipped)  # empty-mask samples passed over
                skipped = dataset.skipped
                if sample is None:
                    break
                fingerprint = sample_fingerprint(sample)
                for method in methods:
                    key = (csv_safe(dataset.name), csv_safe(method.name), csv_safe(sample.id))
                    recorded = records_file.done.get(key)
                    if recorded == fingerprint:
                        continue
                    if recorded is not None:
                        print(
                            f"{dataset.name}: sample {sample.id!r} changed since {method.name} "
                            f"was run on it (image/mask fingerprint {recorded[:12]} is now "
                            f"{fingerprint[:12]}): its records are replaced by a new run"
                        )
                        records_file.drop(key)
                    run = run_sample(method, sample, max_clicks, target_iou, pred_thr, boundary_um)
                    records_file.append(_rows(key, method, sample, fingerprint, run, load_seconds))
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
    boundary = boundary_f_curves(records, max_clicks)
    with atomic_path(out_dir / "boundary_f.csv") as tmp:
        boundary.to_csv(tmp)
    if plot and not curves.empty:
        plot_miou(curves, out_dir / "miou.png", title=f"mIoU vs clicks (max {max_clicks})")
        plot_miou(
            boundary, out_dir / "boundary_f.png", ylabel=f"boundary F ({boundary_um:g} um)",
            title="boundary F-score vs clicks (samples with a known mpp)",
        )
        plot_noc_intervals(summary, out_dir / "noc90.png", title="NoC@90, 95% interval over slides")
    if verbose:
        print(format_summary(summary))
    return summary


def validate_settings(
    max_clicks: int,
    target_iou: float | None,
    limit: int | None,
    pred_thr: float,
    boundary_um: float = 5.0,
) -> dict:
    """The run's settings, checked: ``max_clicks`` and ``limit`` whole numbers >= 1 (``limit``
    may be None), ``target_iou`` in (0, 1] or None, ``pred_thr`` in (0, 1), ``boundary_um`` a
    positive number; NaN and infinities are refused. Raises ValueError naming the setting and
    what it accepts."""

    def whole(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        return int(value)

    def fraction(name: str, value: object, upper_included: bool) -> float:
        number = float(value)  # type: ignore[arg-type]
        inside = 0 < number <= 1 if upper_included else 0 < number < 1
        if not math.isfinite(number) or not inside:
            interval = "(0, 1]" if upper_included else "(0, 1)"
            raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
        return number

    def positive(name: str, value: object) -> float:
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
        return number

    return {
        "max_clicks": whole("max_clicks", max_clicks),
        "target_iou": None if target_iou is None else fraction("target_iou", target_iou, True),
        "limit": None if limit is None else whole("limit", limit),
        "pred_thr": fraction("pred_thr", pred_thr, False),
        "boundary_um": positive("boundary_um", boundary_um),
    }


def _rows(
    key: tuple[str, str, str],
    method: Method,
    sample: Sample,
    fingerprint: str,
    run: SampleRun,
    load_seconds: float,
) -> list:
    dataset, method_name, sample_id = key
    object_id, slide = sample.meta.get("object_id"), sample.meta.get("slide")
    return [
        [
            dataset,
            method_name,
            getattr(method, "weights", ""),
            sample_id,
            fingerprint,
            "" if object_id is None else csv_safe(object_id),
            "" if slide is None else csv_safe(slide),
            k,
            click.y,
            click.x,
            int(click.is_positive),
            repr(float(run.ious[k - 1])),
            run.boundary_f[k - 1],
            run.model_seconds[k - 1],
            run.click_seconds[k - 1],
            run.set_image_seconds,
            getattr(method, "embed_seconds", 0.0),
            int(getattr(method, "embed_reused", False)),
            load_seconds,
            len(run.clicks),
        ]
        for k, click in enumerate(run.clicks, start=1)
    ]


def _check_weights(records: RecordsFile, methods: list[Method], path: Path) -> None:
    """Refuse a method whose name was recorded with other weights: its records would mix."""
    for method in methods:
        weights = getattr(method, "weights", "")
        recorded = records.weights.get(csv_safe(method.name), set()) - {weights}
        if recorded:
            raise ValueError(
                f"{path} holds records of {method.name!r} made with weights {sorted(recorded)[0]!r}, "
                f"but this {method.name!r} has weights {weights!r}: give the method another name "
                "or choose another output folder"
            )


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
