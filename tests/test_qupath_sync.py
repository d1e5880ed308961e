"""Sync with a project others edit: never overwrite their saved work, touch only histoclick's objects.

"Others" are a second real process (paquo, as a script or notebook of a colleague would use it)
saving the same project, and objects made without histoclick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shapely.geometry import box

from histoclick.qupath import open_project
from histoclick.qupath.errors import ProjectChangedError

SECOND_PROCESS = """
import sys
from pathlib import Path
from paquo.projects import QuPathProject
from paquo.classes import QuPathPathClass
from shapely.geometry import box
project = QuPathProject(Path(sys.argv[1]), mode="r+")
entry = project.images[0]
entry.hierarchy.add_annotation(box(*map(float, sys.argv[2:6])), path_class=QuPathPathClass("Stroma"))
project.save()
print(entry.hierarchy.annotations[-1].java_object.getID())
"""


def added_by_another_process(project_path: Path, bounds: tuple[float, float, float, float]) -> str:
    """Another process (paquo, not histoclick) adds an annotation and saves; returns its UUID."""
    done = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(project_path), *map(str, bounds)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture()
def project_path(qupath, tmp_path, synthetic_slide) -> Path:
    slide = tmp_path / "synthetic.tif"
    shutil.copy(synthetic_slide.path, slide)
    project = open_project(tmp_path / "project", mode="x")
    project.add_image(slide)
    project.save()
    return tmp_path / "project"


def ids(project_path: Path) -> set[str]:
    return set(open_project(project_path).image(0).annotations()["id"])


def test_save_refuses_to_overwrite_data_saved_by_another_process_and_merges_on_request(project_path):
    project = open_project(project_path, mode="r+")
    image = project.image(0)
    mine = image.add_annotations([(box(10, 10, 50, 50), "Tumor")])["id"].iloc[0]
    theirs = added_by_another_process(project_path, (100, 100, 200, 200))
    data = Path(image.entry.entry_path) / "data.qpdata"
    their_bytes = data.read_bytes()

    with pytest.raises(ProjectChangedError, match=r"changed on disk.*save\(merge=True\).*reload\(\)"):
        project.save()
    assert data.read_bytes() == their_bytes and ids(project_path) == {theirs}
    assert project.unsaved == 1

    backups = project.save(merge=True)
    assert ids(project_path) == {mine, theirs}
    assert (backups[image.entry_id] / "data.qpdata").read_bytes() == their_bytes
    assert set(project.image(0).annotations()["id"]) == {mine, theirs}  # memory follows the disk
    # Both sides go on: a second change by each is merged the same way.
    again = added_by_another_process(project_path, (300, 300, 320, 320))
    project.image(0).add_annotations([(box(60, 60, 70, 70), "Tumor")])
    with pytest.raises(ProjectChangedError):
        project.save()
    project.save(merge=True)
    assert len(ids(project_path)) == 4 and again in ids(project_path)


def test_reload_drops_unsaved_changes_and_shows_the_disk(project_path):
    project = open_project(project_path, mode="r+")
    project.image(0).add_annotations([(box(10, 10, 50, 50), "Lymph")])
    theirs = added_by_another_process(project_path, (100, 100, 200, 200))
    assert project.reload() == 1
    assert project.unsaved == 0 and "Lymph" not in project.class_colors
    assert set(project.image(0).annotations()["id"]) == {theirs}
    project.save()
    assert ids(project_path) == {theirs}


def test_update_and_delete_touch_only_histoclicks_own_objects(project_path):
    from paquo.classes import QuPathPathClass

    other_tool = open_project(project_path, mode="r+").paquo  # paquo itself: not histoclick
    theirs = str(other_tool.images[0].hierarchy.add_annotation(
        box(500, 500, 900, 900), path_class=QuPathPathClass("Stroma")).java_object.getID())
    other_tool.save()
    project = open_project(project_path, mode="r+")
    image = project.image(0)
    first, second = image.add_annotations([(box(10, 10, 50, 50), "Tumor"), (box(60, 60, 90, 90), "Tumor")])["id"]
    project.save()

    image = project.image(0)
    with pytest.raises(PermissionError, match="not created by histoclick.*force=True"):
        image.update_annotation(theirs, classification="Tumor")
    with pytest.raises(PermissionError, match="not created by histoclick"):
        image.delete_annotations([second, theirs])
    with pytest.raises(KeyError, match="no annotation with id"):
        image.delete_annotations(["00000000-0000-0000-0000-000000000000"])
    assert project.unsaved == 0
    image.update_annotation(first, geometry=box(5, 5, 55, 55), classification="Necrosis", name="edited")
    image.delete_annotations([second])
    assert project.unsaved == 2
    project.save()

    saved = open_project(project_path).image(0).annotations().set_index("id")
    assert set(saved.index) == {first, theirs}
    assert saved.geometry[first].equals(box(5, 5, 55, 55))
    assert (saved["classification"][first], saved["name"][first]) == ("Necrosis", "edited")
    assert saved.geometry[theirs].equals(box(500, 500, 900, 900))

    project = open_project(project_path, mode="r+")
    project.image(0).delete_annotations([theirs], force=True)  # only when asked
    project.save()
    assert ids(project_path) == {first}


def test_a_mask_goes_under_the_annotation_that_contains_it_when_asked(project_path):
    with open_project(project_path, mode="r+") as project:
        image = project.image(0)
        region, other = image.add_annotations([(box(0, 0, 1000, 1000), "Region*"), (box(1200, 0, 1300, 100), "Tumor")])["id"]
        inside, outside = image.add_annotations(
            [(box(100, 100, 200, 200), "Tumor"), (box(1500, 1000, 1600, 1100), "Tumor")], parent="containing"
        )["id"]
        explicit = image.add_annotations([(box(1210, 10, 1220, 20), "Tumor")], parent=other)["id"].iloc[0]
        with pytest.raises(KeyError, match="parent="):
            image.add_annotations([(box(1, 1, 2, 2), "Tumor")], parent="no-such-id")
        project.save()

    hierarchy = open_project(project_path).image(0).entry.hierarchy
    parents = {}
    for annotation in hierarchy.annotations:
        above = annotation.java_object.getParent()
        parents[str(annotation.java_object.getID())] = None if above.isRootObject() else str(above.getID())
    assert parents == {region: None, other: None, inside: region, outside: None, explicit: other}


def test_saving_new_classes_keeps_classes_another_process_saved_meanwhile(project_path):
    project = open_project(project_path, mode="r+")
    project.image(0).add_annotations([(box(10, 10, 50, 50), "Lymph")], class_colors={"Lymph": (1, 2, 3)})
    script = (
        "import sys\n"
        "from paquo.projects import QuPathProject\n"
        "from paquo.classes import QuPathPathClass\n"
        "project = QuPathProject(sys.argv[1], mode='r+')\n"
        "project.path_classes = [*project.path_classes, QuPathPathClass('Gland', color='#0a141e')]\n"
        "project.save()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(project_path)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    project.save()
    colors = open_project(project_path).class_colors
    assert (colors["Gland"], colors["Lymph"]) == ((10, 20, 30), (1, 2, 3))
