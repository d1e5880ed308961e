"""``histoclick qupath list|export|import``: arguments, the missing-QuPath error, a full round trip."""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shapely.geometry import box

from histoclick.cli import qupath as cli
from histoclick.qupath import open_project, read_geojson, write_geojson

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="histoclick")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["qupath", *map(str, argv)])


def test_arguments():
    args = parse("export", "p", "out", "--image", "0", "--image", "b.svs", "--class", "Tumor", "--overwrite")
    assert (args.action, args.image, args.classes, args.overwrite) == ("export", ["0", "b.svs"], ["Tumor"], True)
    assert args.func is cli.run
    with pytest.raises(SystemExit):
        parse("import", "p", "a.geojson")  # --image is required
    with pytest.raises(SystemExit):
        parse("rename", "p")


def test_without_qupath_every_action_prints_how_to_install_it(tmp_path):
    """The real command in a second process whose paquo finds no QuPath (an empty PAQUO_QUPATH_DIR)."""
    empty = tmp_path / "no-qupath"
    empty.mkdir()
    env = {**os.environ, "PAQUO_QUPATH_DIR": str(empty), "PYTHONPATH": str(REPO)}
    script = (
        "import sys\n"
        "from histoclick.cli import main\n"
        "print([main(argv.split('|')) for argv in sys.argv[1:]])\n"
    )
    p = str(tmp_path)
    actions = [f"qupath|list|{p}", f"qupath|export|{p}|{p}/out", f"qupath|import|{p}|{p}/a.geojson|--image|0"]
    done = subprocess.run(
        [sys.executable, "-c", script, *actions], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.stdout.strip().splitlines()[-1] == "[2, 2, 2]", done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("histoclick qupath")]
    assert [line.split(":")[0] for line in errors] == [
        "histoclick qupath list", "histoclick qupath export", "histoclick qupath import"]
    for line in errors:
        assert ": error: QuPath not found" in line
        assert "python -m paquo get_qupath --install-path DIR" in line and "PAQUO_QUPATH_DIR" in line
    assert not (tmp_path / "out").exists()


def test_export_then_import_round_trip(qupath, tmp_path, synthetic_slide, capsys):
    slide = tmp_path / "synthetic.tif"
    shutil.copy(synthetic_slide.path, slide)
    project_dir = tmp_path / "project"
    project = open_project(project_dir, mode="x")
    project.add_image(slide)
    project.save()

    args = parse("list", project_dir)
    assert args.func(args) == 0
    assert "[0] synthetic.tif  2048x1536" in capsys.readouterr().out

    items = [(box(100, 100, 300, 260), "Tumor"), (box(400, 400, 450, 450), "Stroma")]
    source = write_geojson(items, tmp_path / "in.geojson")
    args = parse("import", project_dir, source, "--image", "synthetic.tif", "--class", "Tumor")
    assert args.func(args) == 0
    assert "added 1 annotations" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already holds"):
        args.func(args)  # importing the same file twice would duplicate the objects

    args = parse("export", project_dir, tmp_path / "out")
    assert args.func(args) == 0
    exported = read_geojson(tmp_path / "out" / "synthetic.tif-1.geojson")
    assert list(exported["id"]) == list(read_geojson(source)["id"][:1])
    assert exported.geometry[0].equals(box(100, 100, 300, 260))
    assert args.func(args) == 2  # the file exists now: no silent overwrite
    assert "overwrite" in capsys.readouterr().err


def test_export_names_one_file_per_entry_and_never_overwrites_within_a_run(qupath, tmp_path, capsys):
    """slide.svs, slide.ndpi, slide.tif and sub/slide.tif all had the stem "slide" and overwrote each other."""
    import cv2
    import numpy as np

    files = [tmp_path / name for name in ("slide.svs", "slide.ndpi", "slide.tif", "sub/slide.tif")]
    project = open_project(tmp_path / "project", mode="x")
    for number, path in enumerate(files):
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path.with_suffix(".png")), np.full((48, 64, 3), 50 * number, np.uint8))
        path.with_suffix(".png").rename(path)  # PNG bytes: the test core's reader opens by content
        (image,) = project.add_image(path)
        image.add_annotations([(box(number, number, 10 + number, 10 + number), "Tumor")])
    project.save()

    out = tmp_path / "out"
    args = parse("export", tmp_path / "project", out)
    assert args.func(args) == 0
    names = sorted(path.name for path in out.glob("*.geojson"))
    assert names == ["slide.ndpi-2.geojson", "slide.svs-1.geojson", "slide.tif-3.geojson", "slide.tif-4.geojson"]
    for number, name in enumerate(["slide.svs-1", "slide.ndpi-2", "slide.tif-3", "slide.tif-4"]):
        (geometry,) = read_geojson(out / f"{name}.geojson").geometry
        assert geometry.equals(box(number, number, 10 + number, 10 + number))

    args = parse("export", tmp_path / "project", tmp_path / "again", "--image", "0", "--image", "slide.svs")
    assert args.func(args) == 2
    assert "earlier in this run" in capsys.readouterr().err
