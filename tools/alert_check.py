"""The alert checks: Prometheus's and Alertmanager's own programs on what the monitoring plan renders.

- `promtool check rules` (Prometheus v3.12.0, what kube-prometheus v0.18.0 runs): every rule parses
  and its expression type-checks, as the Prometheus that loads it will;
- `promtool test rules`: each alert fires on the series that should fire it, and only then;
- `amtool check-config` (Alertmanager v0.33.0): the config loads as Alertmanager loads it;
- `am-notify` (tools/alertmanager): each alert routed by Alertmanager's own routing tree and sent by
  its own notifiers (e-mail, webhook) to the receivers the route reaches.

Each function returns the program's result; the tests say what they expect of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tools import gotools


def _run(
    tool: str, args: Sequence[str], cwd: Path, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a pinned tool
        [str(gotools.build(tool)), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def rule_file(prometheus_rule: Mapping[str, Any]) -> str:
    """A PrometheusRule's groups as the rule file the operator writes for Prometheus."""
    return yaml.safe_dump({"groups": prometheus_rule["spec"]["groups"]}, sort_keys=False)


def check_rules(prometheus_rule: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the rule's groups."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-promtool-") as tmp:
        (Path(tmp) / "rules.yaml").write_text(rule_file(prometheus_rule))
        return _run("promtool", ["check", "rules", "rules.yaml"], Path(tmp))


def unit_test_rules(
    prometheus_rule: Mapping[str, Any], tests: Sequence[Mapping[str, Any]], evaluation_interval: str = "1m"
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` with `tests` (promtool's unit-test cases) over the rule's groups; a test over days
    evaluates less often (`evaluation_interval`), as promtool evaluates every rule at each interval up to its last time."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-promtool-") as tmp:
        (Path(tmp) / "rules.yaml").write_text(rule_file(prometheus_rule))
        suite = {"rule_files": ["rules.yaml"], "evaluation_interval": evaluation_interval, "tests": list(tests)}
        (Path(tmp) / "tests.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
        return _run("promtool", ["test", "rules", "tests.yaml"], Path(tmp))


def unit_test_suites(
    suites: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]], evaluation_interval: str = "1m"
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` over several rules at once, each with its own cases: one test file per rule, all given to
    one promtool, which reports each file and fails if any case does (cmd/promtool/unittest.go RulesUnitTest)."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-promtool-") as tmp:
        files = []
        for i, (prometheus_rule, tests) in enumerate(suites):
            (Path(tmp) / f"rules-{i}.yaml").write_text(rule_file(prometheus_rule))
            suite = {"rule_files": [f"rules-{i}.yaml"], "evaluation_interval": evaluation_interval, "tests": list(tests)}
            (Path(tmp) / f"tests-{i}.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
            files.append(f"tests-{i}.yaml")
        return _run("promtool", ["test", "rules", *files], Path(tmp))


def check_config(config: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """`amtool check-config` on an Alertmanager config."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-amtool-") as tmp:
        (Path(tmp) / "alertmanager.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        return _run("amtool", ["check-config", "alertmanager.yaml"], Path(tmp))


def deliver(config: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]], ca_file: Path | None = None) -> list[dict[str, Any]]:
    """Route and send `alerts` ({"labels", "annotations"}) with Alertmanager's code: per alert, the receivers
    reached and what each integration did. `ca_file`: what the notifiers trust (a test server's CA)."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-am-notify-") as tmp:
        (Path(tmp) / "alertmanager.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        env = {"SSL_CERT_FILE": str(ca_file)} if ca_file is not None else {}
        result = _run("am-notify", ["--config", "alertmanager.yaml"], Path(tmp), stdin=json.dumps(list(alerts)), env=env)
    if result.returncode != 0:
        raise RuntimeError(f"am-notify failed: {result.stderr.strip()}")
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found
