"""stacks.outputs: every output __main__.py exports is named there, in the program's order, so that a renamed output
cannot drift from the day-2 checks and the CLI that read it back; and what stacks.day2.missing tells from the outputs a
deployment lacks (an older Iluvatar's, a first `pulumi up` that stopped part-way, or a file cut or edited)."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from stacks import day2, outputs
from tests.edit import ROOT


def _exported() -> list[str]:
    """The first argument of each `pulumi.export` in __main__.py, as written, in the program's order."""
    tree = ast.parse((ROOT / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "pulumi.export"]
    return [ast.unparse(c.args[0]) for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def test_the_program_exports_each_output_by_its_name_here_in_the_tables_order() -> None:
    written = _exported()
    assert [w for w in written if not w.startswith("exports.")] == []
    assert [getattr(outputs, w.removeprefix("exports.")) for w in written] == list(outputs.SINCE)


def test_every_output_the_day2_checks_read_is_one_the_program_exports() -> None:
    assert set(day2.READ_OUTPUTS) <= set(outputs.SINCE)
    assert set(day2.EVERY_DEPLOYMENT) | set(day2.WITH_AINUR) <= set(outputs.SINCE)


NEVER = "planned from them, what a missing output records reads as never deployed"
ALL = "write them all with `pulumi stack output --json --show-secrets > file`"
# The outputs of a deployment of the shipped homelab (Arda, the Ainur, the KMS, remote access), by name.
HOMELAB = [k for k in outputs.SINCE if k != outputs.KMS_KEY_RESTORED]
# A stack without the Ainur: Arda and its network alone.
ARDA_ALONE = [
    outputs.LAN,
    outputs.RESERVATIONS,
    outputs.DNS_RECORDS,
    outputs.VIPS,
    outputs.GATEWAYS,
    outputs.LOAD_BALANCER_POOL,
    outputs.ARDA_TALOSCONFIG,
    outputs.ARDA_INSTALLER_IMAGES,
    outputs.ARDA_DISK_IMAGES,
    outputs.ARDA_PXE_URLS,
    outputs.ARDA_KUBECONFIG,
    outputs.ARDA,
    outputs.CA_CERTIFICATE,
    outputs.EDGE,
    outputs.STORAGE,
]


def _of(names: list[str], ainur: bool = True) -> dict[str, Any]:
    return {k: ({"ainur": "192.168.0.9", "arda": "192.168.0.10"} if ainur else {"arda": "192.168.0.10"}) if k == outputs.VIPS else {} for k in names}


@pytest.mark.parametrize(
    ("names", "ainur", "message"),
    [
        (
            [k for k in HOMELAB if outputs.SINCE[k] < outputs.SINCE[outputs.AINUR]],
            True,
            "the outputs of an Iluvatar from before ainur was an output (2026-11-23 04:17 UTC): it lacks ainur, which one with the "
            f"Ainur writes (its vips.ainur says it had one); {NEVER}; "
            f"this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning names only the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that deployed them, or the first one that writes ainur (from 2026-11-23 04:17 UTC), after its `pulumi preview` plans no machine as new; then {ALL}",
        ),
        (
            [k for k in ARDA_ALONE if outputs.SINCE[k] < outputs.SINCE[outputs.GATEWAYS]],
            False,
            "the outputs of an Iluvatar from before gateways was an output (2026-11-22 08:04 UTC): it lacks gateways, arda and "
            f"storage, which every deployment writes; {NEVER}; "
            f"this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning names only the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that deployed them, or the first one that writes gateways (from 2026-11-22 08:04 UTC), after its `pulumi preview` plans no machine as new; then {ALL}",
        ),
        (
            HOMELAB[: HOMELAB.index(outputs.ARDA)],
            True,
            "the outputs of a first `pulumi up` whose program stopped with an error part-way: those it exported before arda; it "
            f"lacks arda and storage, which every deployment writes; {NEVER}; mend what stopped it and run `pulumi up` again to "
            f"its end, then {ALL}",
        ),
        (
            ARDA_ALONE[: ARDA_ALONE.index(outputs.ARDA)],
            False,
            "a part of a deployment's outputs, not all of them: it lacks arda and storage, which every deployment writes; such "
            "outputs are written by an Iluvatar from before storage was an output (2026-11-22 19:30 UTC), or by a first `pulumi "
            f"up` whose program stopped with an error part-way (those it exported before arda); {NEVER}; after the older "
            "Iluvatar, this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning names only the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that deployed them, or the first one that writes storage (from 2026-11-22 19:30 UTC), after its `pulumi preview` plans no machine as new; after the first `up`, mend what stopped it and run `pulumi "
            f"up` again to its end; then {ALL}",
        ),
        (
            [k for k in HOMELAB if k != outputs.STORAGE],
            True,
            "a part of a deployment's outputs, not all of them: it lacks storage, which every deployment writes, yet it holds "
            "ainurNetworkConfig, which no Iluvatar writes without storage, and grafanaAdminPassword, which a first `pulumi up` "
            f"exports after storage: cut short or edited; {NEVER}; {ALL} (a stack never deployed is {{}})",
        ),
        (HOMELAB, True, None),
        ([], True, None),
    ],
    ids=["before-ainur", "before-gateways", "first-up-stopped", "either", "edited", "whole", "never-deployed"],
)
def test_a_part_of_the_outputs_is_told_by_where_it_comes_from(names: list[str], ainur: bool, message: str | None) -> None:
    assert day2.missing(_of(names, ainur)) == message
