"""One collection at a time while this checkout's compiled modules are not there yet.

A fresh clone has no compiled module of its own: `scripts/test` keeps them under `PYTHONPYCACHEPREFIX`, in a tree
mirroring each source's absolute path, and `uv sync` compiles none of the virtual environment's (uv's
`--compile-bytecode` is off by default). Every worker of the run collects the whole suite, importing the same ~2,000
modules (the provider SDKs, pydantic, the program); started together, each compiled every one of them itself
before any had written its file: measured on 4 workers, 45.6 s of CPU for the workers' start and collection on an
empty cache against 17.2 s on a warm one. So on a cold cache the first worker collects alone and the others wait
for it, then collect together from what it wrote; once a collection has finished, nobody waits again.

The marker sits beside this file's own compiled form (in the prefix's tree, or in `tests/__pycache__`), so it is
as old as this checkout's cache; a cache made stale by other means (a new lock file's packages) is recompiled by
whoever imports first, as before. With bytecode writing off nothing is written to wait for.
"""

from __future__ import annotations

import fcntl
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DONE = "collected"
LOCK = "collection.lock"


def cache_folder() -> Path:
    """Where this checkout's compiled test modules go (what `importlib` computes for this file)."""
    return Path(importlib.util.cache_from_source(__file__)).parent


@contextmanager
def first_collection(folder: Path) -> Iterator[None]:
    """Collect inside this: alone while `folder` has no finished collection, with everyone once it has."""
    if sys.dont_write_bytecode or (folder / DONE).exists():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, whatever the collection did
        if not (folder / DONE).exists():
            yield
            (folder / DONE).touch()
            return
    yield  # another worker collected first: its compiled modules are written; collect beside the others
