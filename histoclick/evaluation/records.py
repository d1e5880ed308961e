"""``records.csv``: one row per simulated click, keyed by content, appended sample by sample.

A sample's rows carry the dataset, method and sample names, the full digest of the method's
weights (``weights``) and a fingerprint of the sample's pixels (``sample_sha256``: image, mask
and ignore mask), so a resumed run can tell a finished sample from one whose content changed.
Names are neutralised for spreadsheets (:func:`csv_safe`): a cell starting with ``=``, ``+``,
``-``, ``@`` (or a tab, a carriage return, or the ``'`` used to escape) gets a leading ``'``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from histoclick.evaluation.protocol import Sample
from histoclick.files import atomic_path

RECORD_COLUMNS = [
    "dataset",
    "method",
    "weights",  # full digest of the method's weights ("" for weight-free methods)
    "sample",
    "sample_sha256",  # fingerprint of the sample's image, mask and ignore mask
    "object_id",  # sample.meta["object_id"] ("" when the sample is a whole tile)
    "slide",  # sample.meta["slide"] ("" when unknown: then each sample is its own group)
    "click",  # 1-based
    "y",  # clicked row, tile pixels
    "x",  # clicked column, tile pixels
    "positive",  # 1 positive, 0 negative
    "iou",  # float32 value, written in full precision
    "boundary_f",  # boundary F-score at settings' boundary_um (NaN without meta["mpp"])
    "model_seconds",  # the method's own time for this click
    "click_seconds",  # wall time: simulate the click, predict, threshold, IoU
    "set_image_seconds",  # per sample (repeated on each of its rows)
    "embed_seconds",  # per sample: the method's own cold embedding seconds (NaN: unknown)
    "embed_reused",  # per sample: 1 when another method's cached embedding was used
    "load_seconds",  # per sample: reading it from the dataset (repeated)
    "n_clicks",  # clicks run on this sample (repeated); marks a complete sample
]
TEXT_COLUMNS = ["dataset", "method", "weights", "sample", "sample_sha256", "object_id", "slide"]
OPTIONAL_COLUMNS = ["boundary_f", "embed_seconds"]  # NaN is a valid value
KEY = ["dataset", "method", "sample"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_safe(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula (it starts
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) or when it starts with ``'``
    itself (so that two different names never write the same cell)."""
    text = str(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def sample_fingerprint(sample: Sample) -> str:
    """SHA-256 (hex) of a sample's pixels: image, gt and ignore mask, with their shapes."""
    digest = hashlib.sha256()
    for array in (sample.image, np.asarray(sample.gt, dtype=bool), sample.ignore):
        if array is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def load_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``records.csv``: names stay strings (even "NA"), numbers are numbers (NaN where a
    field is missing), and IoUs come back as float32, exactly as they were computed."""
    return _typed(pd.read_csv(path, dtype=str, keep_default_na=False))


def _typed(raw: pd.DataFrame) -> pd.DataFrame:
    records = raw.copy()
    for column in RECORD_COLUMNS:
        if column in records and column not in TEXT_COLUMNS:
            records[column] = pd.to_numeric(records[column], errors="coerce")
    if "iou" in records:
        records["iou"] = records["iou"].astype(np.float32)
    return records


class RecordsFile:
    """The records of one output folder, open for appending finished samples.

    Opening it repairs what an interrupted run can leave: a last line without its newline (cut
    while being written) is dropped, then every sample whose rows are incomplete, so appending
    continues a clean table and those samples are run again. Every rewrite is atomic.

    Attributes:
        done: ``(dataset, method, sample) -> sample_sha256`` of every complete sample (names as
            written, i.e. through :func:`csv_safe`).
        weights: ``method -> set of weights digests`` found in the file.
        repairs: one line per repair made on opening, for people.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.repairs: list[str] = []
        self.done: dict[tuple[str, str, str], str] = {}
        self.weights: dict[str, set[str]] = {}
        self._read()
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)

    def __enter__(self) -> RecordsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def append(self, rows: list[list]) -> None:
        """Append one sample's rows and make them durable (flush and fsync)."""
        self._writer.writerows(rows)
        self._file.flush()
        os.fsync(self._file.fileno())

    def drop(self, key: tuple[str, str, str]) -> None:
        """Remove one sample's rows (atomically), e.g. before recomputing a changed sample."""
        self._file.close()
        raw = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        keep = ~(raw[KEY] == list(key)).all(axis=1)
        with atomic_path(self.path) as tmp:
            raw[keep].to_csv(tmp, index=False)
        self.done.pop(key, None)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)

    def _read(self) -> None:
        path = self.path
        content = path.read_bytes() if path.exists() else b""
        if content and not content.endswith(b"\n"):
            content = content[: content.rfind(b"\n") + 1]  # b"" when not even the header is whole
            self.repairs.append(
                f"{path}: its last line was cut short (no newline at the end); dropped it, and "
                "the sample it belonged to is run again"
            )
            with atomic_path(path) as tmp:
                tmp.write_bytes(content)
        if not content:
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerow(RECORD_COLUMNS)
            return
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
        by_sample = records.groupby(KEY, sort=False)["click"]
        complete = (
            records[[c for c in RECORD_COLUMNS if c not in OPTIONAL_COLUMNS]].notna().all(axis=1)
            & by_sample.transform("size").eq(records["n_clicks"])
            & by_sample.transform("max").eq(records["n_clicks"])
            & records.groupby(KEY, sort=False)["sample_sha256"].transform("nunique").eq(1)
        )
        complete = complete.groupby([records[k] for k in KEY], sort=False).transform("all")
        if not complete.all():
            dropped = records.loc[~complete, KEY].drop_duplicates()
            self.repairs.append(
                f"{path}: {len(dropped)} sample(s) with incomplete records dropped, to be run again"
            )
            with atomic_path(path) as tmp:
                raw[complete].to_csv(tmp, index=False)  # the kept rows' text, unchanged
        kept = records[complete]
        for key, fingerprint in kept.groupby(KEY, sort=False)["sample_sha256"].first().items():
            self.done[key] = fingerprint
        for method, weights in kept.groupby("method", sort=False)["weights"].unique().items():
            self.weights[method] = set(weights)
