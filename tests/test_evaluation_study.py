"""The study's figures from a real run: SPC three ways (a shared encoder is charged cold to
every method), boundary F in micrometres, bootstrap intervals over slides, the paired test."""

from __future__ import annotations

import numpy as np
import pytest

from histoclick.datasets.synthetic import make_tile
from histoclick.evaluation import (
    Dataset,
    GrabCut,
    RegionGrowing,
    Sample,
    boundary_f,
    evaluate,
    load_records,
    noc,
    run_sample,
)


class SlideTiles(Dataset):
    """Synthetic tiles in memory, as if cut from slides: meta carries ``slide`` and ``mpp``."""

    def __init__(self, n: int, size: int = 96, slides: int = 3, mpp: float | None = 0.5) -> None:
        super().__init__("slides")
        self.n, self.size, self.slides, self.mpp = n, size, slides, mpp

    @property
    def sample_ids(self) -> list[str]:
        return [f"t{i}" for i in range(self.n)]

    def load(self, sample_id: str) -> Sample:
        i = int(sample_id[1:])
        image, mask = make_tile(i, self.size)
        meta = {"slide": f"slide{i % self.slides}.svs"}
        if self.mpp is not None:
            meta["mpp"] = self.mpp
        return Sample(sample_id, image, mask > 0, meta=meta)


def test_boundary_f_intervals_and_paired_test_reach_the_summary_and_plots(tmp_path):
    dataset = SlideTiles(6)
    out = tmp_path / "out"
    summary = evaluate(
        [RegionGrowing(), GrabCut()], dataset, out, max_clicks=3, boundary_um=2.0, verbose=False
    )
    records = load_records(out / "records.csv")
    assert set(records["slide"]) == {"slide0.svs", "slide1.svs", "slide2.svs"}

    # Each click's boundary F is the score of that click's mask at 2 um = 4 px (mpp 0.5).
    sample = dataset.load("t1")
    run = run_sample(RegionGrowing(), sample, max_clicks=3, boundary_um=2.0)
    expected = boundary_f(sample.gt, run.probs > 0.49, 4.0)
    mine = records[(records["sample"] == "t1") & (records["method"] == "region_growing")]
    assert mine["boundary_f"].iloc[-1] == pytest.approx(expected)
    np.testing.assert_allclose(mine["boundary_f"], run.boundary_f)

    for method in ("region_growing", "grabcut"):
        row = summary.loc[("slides", method)]
        mine = records[records["method"] == method]
        last = mine.groupby("sample")["boundary_f"].last()
        assert row["boundary F"] == pytest.approx(last.mean())
        nocs = mine.groupby("sample")["iou"].apply(lambda ious: noc(ious.to_numpy(), 0.90, 3))
        assert row["NoC@90 CI low"] <= row["NoC@90"] <= row["NoC@90 CI high"]
        assert 0 <= row["mIoU AUC"] <= 1 and 0 <= row["harmful click rate"] <= 1
        assert row["NoC@90"] == pytest.approx(nocs.mean())
    best = summary.loc[("slides", "region_growing"), "best method"]
    assert best in ("region_growing", "grabcut")
    other = "grabcut" if best == "region_growing" else "region_growing"
    assert np.isnan(summary.loc[("slides", best), "p NoC@90 vs best"])
    assert 0 < summary.loc[("slides", other), "p NoC@90 vs best"] <= 1
    on_disk = (out / "summary.csv").read_text()
    assert "boundary F" in on_disk and "NoC@90 CI low" in on_disk and "p NoC@90 vs best" in on_disk
    for name in ("miou.png", "boundary_f.png", "noc90.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_boundary_f_needs_the_samples_mpp(tmp_path):
    summary = evaluate(RegionGrowing(), SlideTiles(2, mpp=None), tmp_path / "o", max_clicks=2, verbose=False)
    assert np.isnan(load_records(tmp_path / "o" / "records.csv")["boundary_f"]).all()
    assert np.isnan(summary.iloc[0]["boundary F"])


@pytest.mark.slow
def test_a_shared_encoder_runs_once_yet_each_method_is_charged_its_embedding(tmp_path):
    from histoclick import load_model
    from histoclick.evaluation import SamMethod

    model = load_model("vit_tiny", device="cpu", seed=7)  # a seed no other test caches
    runs = []
    hook = model.sam.image_encoder.register_forward_hook(lambda *_: runs.append(1))
    first, second = SamMethod(model, name="sam:first"), SamMethod(model, name="sam:second")
    summary = evaluate(
        [first, second], SlideTiles(2, size=64), tmp_path / "out", max_clicks=2, verbose=False
    )
    hook.remove()
    assert len(runs) == 2  # one embedding per sample, shared by both methods

    records = load_records(tmp_path / "out" / "records.csv")
    per = records.groupby(["method", "sample"]).first()
    assert (per.loc["sam:first", "embed_reused"] == 0).all()
    assert (per.loc["sam:second", "embed_reused"] == 1).all()
    # The second method is charged the embedding the first one computed, sample by sample.
    np.testing.assert_array_equal(per.loc["sam:second", "embed_seconds"], per.loc["sam:first", "embed_seconds"])

    for method in ("sam:first", "sam:second"):
        mine = records[records["method"] == method]
        embed = per.loc[method, "embed_seconds"].sum()
        row = summary.loc[("slides", method)]
        assert row["SPC (cold)"] == pytest.approx((mine["model_seconds"].sum() + embed) / len(mine))
        assert row["SPC (cold)"] > row["SPC (model; SAM family only)"]
        stops = {s: noc(g["iou"].to_numpy(), 0.90, len(g)) for s, g in mine.groupby("sample")}
        wall = sum(
            g["load_seconds"].iloc[0] + g["set_image_seconds"].iloc[0]
            + g["embed_seconds"].iloc[0] * g["embed_reused"].iloc[0]
            + g["click_seconds"].iloc[: stops[s]].sum()
            for s, g in mine.groupby("sample")
        )
        assert row["SPC (RITM; the study's)"] == pytest.approx(wall / sum(stops.values()))
