"""An alert: one type for the stack's Prometheus rules (plans.monitoring) and its log rules (plans.logs, vmalert).

Plain data; each plan renders its own rule files with `Alert.rule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One alert: its rule and what it means to the person it wakes (docs/layers/monitoring.md).

    `expr` is PromQL for Prometheus or LogsQL for vmalert's `vlogs` rules (each stats row fires it); `duration` is the
    rule's `for`, None for an alert that fires at the first evaluation that finds it; `labels` are added to the rule's
    own (a per-machine rule names its machine this way)."""

    name: str
    expr: str
    duration: str | None
    severity: str
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...] = ()
    # Where the owner reads what to do (a docs/ page and anchor), given to the receiver as `runbook_url`.
    runbook: str | None = None

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.duration is not None:
            rule["for"] = self.duration
        rule["labels"] = {**dict(self.labels), "severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "description": self.description}
        if self.runbook is not None:
            rule["annotations"]["runbook_url"] = self.runbook
        return rule
