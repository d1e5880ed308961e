"""``histoclick qupath list|export|import``: arguments, the missing-QuPath error, a full round trip."""

import argparse
import shutil

import pytest
from shapely.geometry import box

from histoclick.cli import qupath as cli
from histoclick.qupath import QuPathNotFoundError, find_qupath, open_project, read_geojson, write_geojson


def _qupath_installed() -> bool:
    try:
        find_qupath()
    except QuPathNotFoundError:
        return False
    return True


QUPATH = _qupath_installed()


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


@pytest.mark.skipif(QUPATH, reason="QuPath is installed: the missing-QuPath error cannot occur")
@pytest.mark.parametrize(
    "argv",
    [("list", "{p}"), ("export", "{p}", "{p}/out"), ("import", "{p}", "{p}/a.geojson", "--image", "0")],
)
def test_without_qupath_every_action_prints_how_to_install_it(tmp_path, capsys, argv):
    args = parse(*(a.format(p=tmp_path) for a in argv))
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"histoclick qupath {argv[0]}: error: QuPath not found")
    assert "python -m paquo get_qupath --install-path DIR" in err and "PAQUO_QUPATH_DIR" in err


@pytest.mark.skipif(not QUPATH, reason="needs QuPath for paquo (python -m paquo get_qupath ...)")
def test_export_then_import_round_trip(tmp_path, synthetic_slide, capsys):
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
    exported = read_geojson(tmp_path / "out" / "synthetic.geojson")
    assert list(exported["id"]) == list(read_geojson(source)["id"][:1])
    assert exported.geometry[0].equals(box(100, 100, 300, 260))
    assert args.func(args) == 2  # the file exists now: no silent overwrite
    assert "overwrite" in capsys.readouterr().err
