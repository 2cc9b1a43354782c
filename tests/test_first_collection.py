"""tests/first_collection.py: on a cold cache one collection at a time, on a warm one all at once."""

from __future__ import annotations

import fcntl
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.first_collection import DONE, LOCK, cache_folder, first_collection


@pytest.fixture(autouse=True)
def writing_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `scripts/test` runs the suite (it unsets PYTHONDONTWRITEBYTECODE), whatever the shell here says."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def held(folder: Path) -> bool:
    """Whether someone holds the collection lock (tried from a file of its own, without waiting)."""
    with (folder / LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_the_first_collection_on_a_cold_cache_holds_the_lock_and_leaves_the_marker(tmp_path: Path) -> None:
    folder = tmp_path / "pycache" / "tests"
    with first_collection(folder):
        assert held(folder), "a second worker would compile the same modules beside the first"
        assert not (folder / DONE).exists()
    assert (folder / DONE).exists()
    assert not held(folder)


def test_once_a_collection_finished_the_others_collect_together(tmp_path: Path) -> None:
    (tmp_path / DONE).touch()
    with first_collection(tmp_path):
        assert not (tmp_path / LOCK).exists(), "nobody waits once the cache is warm"


def test_a_failed_collection_leaves_no_marker_and_no_lock(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), first_collection(tmp_path):
        raise RuntimeError("a module did not import")
    assert not (tmp_path / DONE).exists()
    assert not held(tmp_path)


def test_with_bytecode_writing_off_nobody_waits_for_what_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with first_collection(tmp_path):
        assert not (tmp_path / LOCK).exists()
    assert not (tmp_path / DONE).exists()


def test_the_marker_is_where_this_checkouts_compiled_test_modules_go() -> None:
    expected = Path(importlib.util.cache_from_source(str(Path(__file__).parent / "conftest.py"))).parent
    assert cache_folder() == expected
    if sys.pycache_prefix:
        assert cache_folder().is_relative_to(sys.pycache_prefix)
