"""The upgrader's own Go unit tests (`upgrader/**/_test.go`), run as part of the suite: the table tests of each
package under `internal/` pin behaviour the Python-side tests reach only through the built program (escaping of a
machine's text, the discovery window's bounds, the stop signal's path), and a Go test CI never runs proves nothing."""

from __future__ import annotations

from pathlib import Path

from iluvatar import golang

UPGRADER = Path(__file__).resolve().parents[2] / "upgrader"


def test_the_upgraders_go_unit_tests_pass() -> None:
    # Go's own test cache, not `-count=1`: a package's result is reused only when its test binary (its sources and every
    # dependency's, built -trimpath, so the same in any clone) and the environment variables and files the test read are
    # all unchanged; any change runs it again. The warm CI run no longer links and runs a dozen unchanged test binaries
    # (20 s of CPU to 1 s: docs/proof/performance.md, CI time).
    result = golang.run_go_tests(UPGRADER)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # Every package with tests ran them (a package that fails to build reports FAIL, one with none says so).
    ran = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert "github.com/iluvatar/upgrader/internal/discovery" in ran
    assert "github.com/iluvatar/upgrader/internal/talos" in ran
