"""Every credential, certificate, token and key the homelab depends on, its lifetime, who renews it and what warns.

    .venv/bin/python scripts/lifetimes.py [STACK_FILE]

Prints plans.lifetimes' table for the stack file (the shipped Pulumi.homelab.yaml by default): the table docs/day2.md
publishes ("What ends, and who renews it"), which tests/plans/test_lifetimes.py holds to this output.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plans import lifetimes  # noqa: E402 - after the project is on the path
from stacks.load import load_stack_file  # noqa: E402

HOMELAB = ROOT / "Pulumi.homelab.yaml"


def main(argv: list[str]) -> int:
    stack = load_stack_file(argv[0] if argv else HOMELAB)
    sys.stdout.write(lifetimes.table(stack))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
