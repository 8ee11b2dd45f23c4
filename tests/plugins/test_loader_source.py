"""Whether a built-in plugin's source tree changed since the build (uwsgid.plugins.loader
_source_changed): the start-up compares sizes and the dates against the executable's, and reads
only the files written since it was built."""

from __future__ import annotations

import os

from uwsgid.plugins import loader

FILES = {"demo_plugin/__init__.py": b"plugin = None\n", "demo_plugin/runtime.lua": b"return 1\n",
         "demo_plugin/sub/helper.py": b"VALUE = 'built'\n"}


def _tree(tmp_path, files=FILES, age: int = 100):
    """The source tree (its files `age` seconds older than the executable) and the executable."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "src"
    origin = tmp_path / "uwsgi"
    origin.write_bytes(b"\x7fELF")
    built = origin.stat().st_mtime
    for rel, data in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (built - age, built - age))
    (src / "demo_plugin" / "__pycache__").mkdir()
    (src / "demo_plugin" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"ignored")
    return src, origin


def changed(src, origin, files=FILES) -> bool:
    return loader._source_changed(str(src), "demo_plugin", {k: memoryview(v) for k, v in files.items()},
                                  str(origin))


def test_the_built_tree_is_unchanged(tmp_path):
    src, origin = _tree(tmp_path)
    assert not changed(src, origin)


def test_a_file_touched_after_the_build_with_the_same_content_is_unchanged(tmp_path):
    src, origin = _tree(tmp_path)
    os.utime(src / "demo_plugin" / "runtime.lua")       # now: newer than the executable
    assert not changed(src, origin)


def test_an_edit_of_the_same_size_after_the_build_is_a_change(tmp_path):
    src, origin = _tree(tmp_path)
    (src / "demo_plugin" / "sub" / "helper.py").write_bytes(b"VALUE = 'edit!'\n")
    assert changed(src, origin)


def test_another_size_is_a_change_whatever_its_date(tmp_path):
    src, origin = _tree(tmp_path, {**FILES, "demo_plugin/runtime.lua": b"return 22\n"})
    assert changed(src, origin)


def test_a_file_added_or_removed_is_a_change(tmp_path):
    src, origin = _tree(tmp_path, {**FILES, "demo_plugin/new.py": b""})
    assert changed(src, origin)
    src2, origin2 = _tree(tmp_path / "b", {k: v for k, v in FILES.items() if not k.endswith(".lua")})
    assert changed(src2, origin2)


def test_an_edit_older_than_the_build_is_not_read(tmp_path):
    """The trade-off: a file dated before the executable with its copy's size is the copy (the
    build read it); the start-up does not read it to be sure."""
    src, origin = _tree(tmp_path, {**FILES, "demo_plugin/sub/helper.py": b"VALUE = 'older'\n"})
    assert not changed(src, origin)


def test_without_a_date_for_the_copy_every_file_is_compared(tmp_path):
    src, origin = _tree(tmp_path, {**FILES, "demo_plugin/sub/helper.py": b"VALUE = 'older'\n"})
    assert changed(src, tmp_path / "gone")
    assert not changed(*_tree(tmp_path / "b"))


def test_no_source_tree_is_no_change(tmp_path):
    assert not changed(tmp_path / "none", tmp_path / "uwsgi")
