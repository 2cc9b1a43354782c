"""The real control plane as pytest fixtures, for any test directory (tests/conftest.py loads this plugin).

    @pytest.mark.kube
    def test_something(kube_talos: Cluster) -> None:      # Arda: Talos's flags and Pod Security
        kube_talos.client.create({...})

    @pytest.mark.kube
    def test_other(kube_k3s: Cluster) -> None: ...         # the Ainur: k3s's flags, Kubernetes 1.33

    @pytest.mark.kube
    def test_empty(kube_fresh: Callable[[Flavor], Cluster]) -> None:
        cluster = kube_fresh(TALOS)                        # a cluster of its own, stopped after the test

`kube_talos` and `kube_k3s` start once per test file, on first use, and stop when the file is done
(Ctrl-C included): an idle control plane still spends about 3 s of CPU a minute (leader elections, the
controllers' resyncs, etcd), and a session-wide one idled on each worker until the whole run ended.
They are shared: a test makes its own namespace (`kube_namespace`) and leaves other tests' objects alone; nodes are shared too (make your own with a unique name, or use
`kube_fresh` for a cluster no other test touches). Each cluster's admin kubeconfig is
`cluster.kubeconfig`, its logs `cluster.root / "<component>.log"`.

Every test that uses one carries the `kube` marker (collection fails otherwise), and so does a
test that starts a `tools.kube_cluster.Cluster` itself: `pytest -m kube` runs exactly them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.kube_cluster import K3S, TALOS, Cluster, Flavor

FIXTURES = frozenset({"kube_talos", "kube_k3s", "kube_fresh", "kube_namespace"})


def _shared_cluster(flavor: Flavor, tmp_path_factory: pytest.TempPathFactory, audit: bool = False) -> Iterator[Cluster]:
    """A control plane for a file's tests; `audit`: with the API server's audit log (a file that counts one client's
    requests overrides its `kube_talos` with one)."""
    cluster = Cluster(flavor, tmp_path_factory.mktemp(f"kube-{flavor.name}"), audit=audit)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def kube_talos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Arda's control plane (Kubernetes 1.35.1, Talos 1.14's flags and Pod Security defaults), shared by the file's tests."""
    yield from _shared_cluster(TALOS, tmp_path_factory)


@pytest.fixture(scope="module")
def kube_k3s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The Ainur's control plane (Kubernetes 1.35, k3s's flags: no Pod Security defaults), shared by the file's tests."""
    yield from _shared_cluster(K3S, tmp_path_factory)


@pytest.fixture
def kube_fresh(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start a control plane of the given flavor for this test alone (`kube_fresh(TALOS)`); stopped when the test ends."""
    started: list[Cluster] = []
    counter = itertools.count()

    def start(flavor: Flavor, **kwargs: object) -> Cluster:
        cluster = Cluster(flavor, tmp_path / f"kube-{flavor.name}-{next(counter)}", **kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop()


_names = itertools.count()


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest) -> Iterator[Callable[[Cluster, dict[str, str] | None], str]]:
    """Make a namespace of this test's own in a shared cluster (`kube_namespace(kube_talos, labels)`); deleted afterwards."""
    made: list[tuple[Cluster, str]] = []

    def make(cluster: Cluster, labels: dict[str, str] | None = None) -> str:
        name = f"t{next(_names)}-{request.node.name.lower().replace('_', '-')}"[:63].rstrip("-")
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
        made.append((cluster, name))
        return name

    yield make
    for cluster, name in made:
        if cluster.processes:
            cluster.client.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a control-plane fixture without the `kube` marker is a collection error."""
    wrong = [item.nodeid for item in items if FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("kube") is None]
    if wrong:
        raise pytest.UsageError("these tests use a control plane but lack @pytest.mark.kube:\n  " + "\n  ".join(wrong))
