"""Mistaken stacks written for a LAN of their own (10.20.0.0/24, not the homelab's): each is one mistake a user could
make in the newest layers, refused with exactly the expected problems, or valid with exactly the expected warnings.

The base is what `iluvatar init` writes for two Pis, a control plane and two workers with GitOps, ntfy alerts, a
static admin and an S3 backup on the NAS (10.20.0.40), plus an app backed up and a raw-port app; its secrets as
`pulumi config set --secret` leaves them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks import StackConfigError, load_stack_file
from stacks.warn import warnings
from tests.edit import SALT, edit, secure, write_stack

FIXTURE: dict[str, Any] = yaml.load((Path(__file__).parent.parent / "fixtures" / "own_lan_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)
SECRETS = ("iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey", "iluvatar:identityConnectorSecret")
CASES: list[dict[str, Any]] = FIXTURE["cases"]


def _doc(case: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(FIXTURE["base"])
    doc["config"].update({key: secure() for key in SECRETS})
    doc["encryptionsalt"] = SALT
    if case is None:
        return doc
    doc["config"].update(copy.deepcopy(case.get("add", {})))
    edited: dict[str, Any] = edit(doc, case.get("set"), case.get("delete"))
    return edited


def test_the_base_is_valid_without_warnings(tmp_path: Path) -> None:
    assert warnings(load_stack_file(write_stack(tmp_path, _doc()), require_secrets=True)) == []


def test_the_count_of_cases() -> None:
    assert len(CASES) == 76
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_mistake_is_refused_or_warned(case: dict[str, Any], tmp_path: Path) -> None:
    path = write_stack(tmp_path, _doc(case))
    if "warn" in case:
        assert [str(w) for w in warnings(load_stack_file(path, require_secrets=True))] == case["warn"]
        return
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path, require_secrets=True)  # as `iluvatar validate` and `pulumi preview` check it
    assert [str(p) for p in err.value.problems] == case["expect"]
