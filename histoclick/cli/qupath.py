"""``histoclick qupath list|export|import``: QuPath projects from the command line (needs QuPath).

- ``list PROJECT``: the project's images with size, pyramid downsamples and URI; entries histoclick
  cannot read (OMERO, rotated, missing file, ...) are listed with the reason.
- ``export PROJECT OUTPUT``: annotations as QuPath GeoJSON, one file per image (OUTPUT is a folder;
  files named ``<image name>-<entry id>.geojson``, :mod:`histoclick.qupath.naming`, as the Groovy
  scripts name them) or one image to one ``.geojson`` file. A file written earlier in the same run
  is never overwritten.
- ``import PROJECT GEOJSON --image IMAGE``: add a histoclick GeoJSON's annotations to an image;
  its data folder is backed up first and existing objects are left untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qupath",
        help="list, export and import annotations of QuPath projects",
        description="Work with QuPath projects through paquo (needs a QuPath installation: "
        "python -m paquo get_qupath --install-path DIR 0.5.1, then set PAQUO_QUPATH_DIR).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list the images of a project")
    listing.add_argument("project", type=Path, help="project folder or project.qpproj")

    export = actions.add_parser("export", help="export annotations to QuPath GeoJSON")
    export.add_argument("project", type=Path, help="project folder or project.qpproj")
    export.add_argument(
        "output", type=Path,
        help="a folder (one <image name>-<entry id>.geojson per image) or a .geojson file (one --image)",
    )
    export.add_argument(
        "--image", action="append", metavar="IMAGE",
        help="image name or index (repeatable; default: all images)",
    )
    export.add_argument(
        "--class", dest="classes", action="append", metavar="CLASS",
        help="export only this class (repeatable)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace existing files")

    load = actions.add_parser(
        "import", help="add the annotations of a GeoJSON file to a project image"
    )
    load.add_argument("project", type=Path, help="project folder or project.qpproj")
    load.add_argument("geojson", type=Path, help="GeoJSON file, e.g. written by histoclick")
    load.add_argument("--image", required=True, metavar="IMAGE", help="image name or index")
    load.add_argument(
        "--class", dest="classes", action="append", metavar="CLASS",
        help="import only this class (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.qupath import ImageUnreachableError, QuPathNotFoundError

    actions = {"list": _list, "export": _export, "import": _import}
    try:
        return actions[args.action](args)
    except (QuPathNotFoundError, ImageUnreachableError, FileExistsError, KeyError, IndexError) as err:
        message = err.args[0] if isinstance(err, KeyError) else err
        print(f"histoclick qupath {args.action}: error: {message}", file=sys.stderr)
        return 2


def _list(args: argparse.Namespace) -> int:
    from histoclick.qupath import open_project

    project = open_project(args.project, mode="r")
    print(f"{project.path}: {len(project.paquo.images)} images")
    for image in project.images:
        size = f"{image.width}x{image.height}" if image.width is not None else "size unknown"
        downsamples = ", ".join(f"{d:g}" for d in image.downsamples or [])
        problem = image.problem
        state = "ok" if problem is None else f"UNREADABLE ({problem})"
        print(f"  [{image.index}] {image.name}  {size}  downsamples {downsamples}  {state} {' '.join(image.uris)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from histoclick.qupath import open_project, write_geojson
    from histoclick.qupath.naming import entry_file_stem

    project = open_project(args.project, mode="r")
    images = project.images if not args.image else [project.image(_key(k)) for k in args.image]
    to_file = args.output.suffix.lower() in (".geojson", ".json")
    if to_file and len(images) != 1:
        raise ValueError(
            f"{args.output} is a file but {len(images)} images are selected; pass one --image "
            "or give a folder"
        )
    written: dict[Path, str] = {}
    for image in images:
        target = args.output if to_file else args.output / f"{entry_file_stem(image.name, image.entry_id)}.geojson"
        if target in written:  # the same image selected twice
            raise FileExistsError(
                f"{target} was written for {written[target]} earlier in this run; select each image once"
            )
        frame = image.annotations(args.classes)
        write_geojson(frame, target, overwrite=args.overwrite)
        written[target] = repr(image.name)
        print(f"{image.name}: {len(frame)} annotations -> {target}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from histoclick.qupath import open_project, read_geojson, select_classes

    project = open_project(args.project, mode="r+")
    image = project.image(_key(args.image))
    frame = read_geojson(args.geojson)
    frame = frame[frame["object_type"] == "annotation"]
    if args.classes:
        frame = select_classes(frame, args.classes)
    if frame.empty:
        print(f"{args.geojson} holds no annotations to import; {image.name} is unchanged")
        return 0
    added = image.add_annotations(frame)
    backups = project.save()
    print(f"{image.name}: added {len(added)} annotations from {args.geojson}")
    print(f"backup of the image's previous data: {backups[image.entry_id]}")
    return 0


def _key(text: str) -> int | str:
    """An image index when the text is a whole number, its name otherwise."""
    return int(text) if text.lstrip("-").isdigit() else text
