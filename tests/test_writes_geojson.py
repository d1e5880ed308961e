"""GeoJSON writes under real faults: concurrent processes, links, read-only files, kills, full disks,
malformed files. Every second process here is a real one."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shapely.geometry import Polygon, box

from histoclick.qupath import Annotation, read_geojson, write_geojson
from histoclick.qupath.geojson import GeoJSONError

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args: str) -> subprocess.Popen:
    """A real second Python process running ``code`` (with histoclick importable)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.slow
def test_concurrent_appends_from_four_processes_all_land(tmp_path):
    path = tmp_path / "shared.geojson"
    appender = """
        import sys
        from shapely.geometry import box
        from histoclick.qupath import Annotation, write_geojson
        worker, path = sys.argv[1], sys.argv[2]
        for i in range(30):
            write_geojson([Annotation(box(i, i, i + 1, i + 1), "Tumor", name=f"{worker}-{i}")], path, mode="append")
    """
    workers = [python(appender, f"w{k}", str(path)) for k in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    frame = read_geojson(path)
    assert sorted(frame["name"]) == sorted(f"w{k}-{i}" for k in range(4) for i in range(30))
    assert frame["id"].is_unique and len(frame) == 120


def test_append_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path):
    target = write_geojson([box(0, 0, 1, 1)], tmp_path / "real" / "objects.geojson")
    link = tmp_path / "link.geojson"
    link.symlink_to(target)
    write_geojson([box(2, 2, 3, 3)], link, mode="append")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(read_geojson(target)) == 2


def test_append_to_a_hard_linked_file_keeps_the_link(tmp_path):
    first = write_geojson([box(0, 0, 1, 1)], tmp_path / "a.geojson")
    second = tmp_path / "b.geojson"
    os.link(first, second)
    write_geojson([box(2, 2, 3, 3)] * 40, second, mode="append")  # larger: the file grows
    assert os.path.samefile(first, second)
    assert len(read_geojson(first)) == len(read_geojson(second)) == 41
    write_geojson([box(5, 5, 6, 6)], first, overwrite=True)  # smaller: the file shrinks
    assert len(read_geojson(second)) == 1 and os.path.samefile(first, second)


def test_read_only_file_is_refused_and_left_as_it_is(tmp_path):
    path = write_geojson([box(0, 0, 1, 1)], tmp_path / "ro.geojson")
    path.chmod(0o444)
    before = path.read_bytes()
    for kwargs in ({"mode": "append"}, {"overwrite": True}):
        with pytest.raises(PermissionError, match=r"ro\.geojson is read-only .*chmod u\+w"):
            write_geojson([box(2, 2, 3, 3)], path, **kwargs)
    assert path.read_bytes() == before and (path.stat().st_mode & 0o777) == 0o444


@pytest.mark.parametrize(
    "document, problem",
    [
        ({"type": "FeatureCollection", "features": "abc"}, "'features' must be a list"),
        ({"type": "FeatureCollection", "features": {"a": 1}}, "'features' must be a list"),
        ({"type": "FeatureCollection", "features": [1, 2]}, "feature 0 is not a GeoJSON Feature"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": "x"}]}, "feature 0"),
        ("just text", "expected a FeatureCollection"),
    ],
)
def test_appending_to_a_file_without_a_list_of_features_is_refused(tmp_path, document, problem):
    path = tmp_path / "odd.geojson"
    path.write_text(json.dumps(document))
    before = path.read_bytes()
    with pytest.raises(GeoJSONError, match=f"odd.geojson.*{problem}"):
        write_geojson([box(0, 0, 1, 1)], path, mode="append")
    assert path.read_bytes() == before


POLYGON = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 3], [0, 0]]]}


def features(*properties, geometry=POLYGON) -> str:
    """A list of Features with these ``properties`` (None: no properties) as JSON text."""
    return json.dumps([
        {"type": "Feature", "geometry": geometry, **({} if p is None else {"properties": p})}
        for p in properties
    ])  # fmt: skip


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (features(["x"]), "feature 0: properties must be an object"),
        (features(None, {"classification": 5}), "feature 1: cannot read classification 5"),
        (features({"measurements": [{"value": 1}]}), "feature 0: measurement lists hold {name, value}"),
        (features({"measurements": "high"}), "feature 0: measurements must be an object"),
        (features(None, geometry={"type": "Polygon", "coordinates": 7}), "feature 0"),
        (features(None, geometry={"type": "Blob", "coordinates": []}), "feature 0"),
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}}]', "feature 0: NaN or inf"),
        ('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [Infinity, 1]}}', "feature 0: NaN"),
        (features({"name": 3}), "feature 0: name must be text"),
        (features({"childObjects": [{"type": "Feature"}]}), "feature 0 child 0: not a GeoJSON Feature"),
    ],
)
def test_malformed_geojson_raises_one_clear_error(tmp_path, text, problem):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(GeoJSONError, match=f"bad.geojson.*{problem}"):
        read_geojson(path)


@pytest.mark.parametrize("name, problem", [("bad.geojson.gz", "not a readable gzip"), ("bad.zip", "not a readable zip")])
def test_damaged_compressed_files_raise_the_same_clear_error(tmp_path, name, problem):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 not really compressed")
    with pytest.raises(GeoJSONError, match=f"{name} is {problem}"):
        read_geojson(path)


def test_non_finite_coordinates_are_not_written(tmp_path):
    with pytest.raises(ValueError, match="annotation 0 has NaN or infinite coordinates"):
        write_geojson([Polygon([(0, 0), (float("inf"), 0), (1, 1)])], tmp_path / "nan.geojson")
    assert not (tmp_path / "nan.geojson").exists()


def test_part_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    path = write_geojson([box(0, 0, 1, 1)], tmp_path / "a.geojson")
    writer = """
        import sys, time
        from histoclick.files import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text('{"type": "FeatureCollection", "features": [')  # half a file
            print(tmp, flush=True)
            time.sleep(600)
    """
    killed, alive = python(writer, str(path)), python(writer, str(path))
    try:
        killed_part, alive_part = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
        assert killed_part.exists() and alive_part.exists()
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert killed_part.exists()  # kill -9: nothing cleaned up

        write_geojson([box(2, 2, 3, 3)], path, mode="append")
        assert not killed_part.exists()
        assert alive_part.exists()  # a running writer's file is not touched
        assert len(read_geojson(path)) == 2
    finally:
        for process in (killed, alive):
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and permission to mount; skips otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_gives_a_clear_error_and_keeps_the_file(tiny_disk):
    path = write_geojson([Annotation(box(0, 0, 1, 1), "Tumor")], tiny_disk / "a.geojson")
    before = path.read_bytes()
    big = [Annotation(box(i, 0, i + 1, 1), "Tumor", name="x" * 200) for i in range(400)]  # ~160 KB
    with pytest.raises(OSError, match="no space left on the device holding .*a.geojson; the file was not changed") as error:
        write_geojson(big, path, mode="append")
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == [".a.geojson.lock", "a.geojson"]


def test_full_disk_leaves_a_hard_linked_file_as_it_was(tiny_disk):
    path = write_geojson([Annotation(box(0, 0, 1, 1), "Tumor")], tiny_disk / "a.geojson")
    os.link(path, tiny_disk / "b.geojson")
    before = path.read_bytes()
    # ~42 KB: the .part file fits on the 64 KiB disk, the in-place copy beside it does not.
    middle = [Annotation(box(i, 0, i + 1, 1), "Tumor", name="x" * 100) for i in range(100)]
    with pytest.raises(OSError, match="no space left"):
        write_geojson(middle, path, mode="append")
    assert (tiny_disk / "b.geojson").read_bytes() == before == path.read_bytes()
    assert os.path.samefile(path, tiny_disk / "b.geojson")
