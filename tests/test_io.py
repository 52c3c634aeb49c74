import os

from mrl.io import copy_if_changed


def test_copy_if_changed_copies_new_or_changed_files_and_leaves_equal_ones_untouched(tmp_path):
    src, dst = tmp_path / "a.txt", tmp_path / "out" / "a.txt"
    src.write_text("one")
    assert copy_if_changed(src, dst) and dst.read_text() == "one"
    os.utime(dst, (1, 1))
    assert not copy_if_changed(src, dst) and dst.stat().st_mtime == 1  # same bytes: not touched
    src.write_text("two")
    assert copy_if_changed(src, dst) and dst.read_text() == "two"
