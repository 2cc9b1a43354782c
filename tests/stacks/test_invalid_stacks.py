"""Every broken variant of the homelab stack is rejected with exactly the expected problems."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks import StackConfigError, day2, load_stack_file, netboot_mode
from stacks.storage import Deployed, check_removals
from stacks.warn import warnings
from tests.edit import edit, homelab_doc, write_stack

# libyaml's parser (the same safe constructor, the same 552 cases): the pure-Python one took 0.22 s of every pytest
# process's collection for this file, and tests/stacks/test_schema.py reads these same cases from here.
CASES: list[dict[str, Any]] = yaml.load((Path(__file__).parent.parent / "fixtures" / "invalid_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)


def test_the_fixture_set_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_broken_stack_reports_exact_problems(case: dict[str, Any], tmp_path: Path) -> None:
    # `file`: the stack file's own top-level keys beside config (what `pulumi stack init` writes: encryptionsalt).
    doc = edit(homelab_doc(), case.get("set"), case.get("delete"))
    # `add`: config keys taken whole, as written (a key `set` cannot name: one with no namespace, `iluvatar.monitoring`).
    doc["config"].update(case.get("add", {}))
    path = write_stack(tmp_path, {**doc, **case.get("file", {})})
    if "deployed" in case:
        # A stack valid alone, refused against the last deployment's `storage` output (as `pulumi preview` reads it back).
        problems = check_removals(load_stack_file(path), Deployed.from_output(case["deployed"]))
        assert [str(p) for p in problems] == case["expect"]
        return
    if "dnsmasqConf" in case:
        # Refused against the last deployment's `dnsmasqConf` output (stacks.netboot_mode), as `pulumi preview` reads it back.
        problems = netboot_mode.check(load_stack_file(path), case["dnsmasqConf"])
        assert [str(p) for p in problems] == case["expect"]
        return
    if "arda" in case or "ainur" in case:
        # Refused against the last deployment's `arda` and `ainur` outputs (stacks.day2), as `pulumi preview` reads them back.
        problems = day2.check(load_stack_file(path), day2.DeployedArda.from_output(case.get("arda")), case.get("ainur"))
        assert [str(p) for p in problems] == case["expect"]
        return
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path, require_secrets=True)  # as `iluvatar validate` and `pulumi preview` check it
    assert [str(p) for p in err.value.problems] == case["expect"]
    count = len(case["expect"])
    assert err.value.report().splitlines()[0] == f"{path}: {count} problem{'' if count == 1 else 's'}:"


@pytest.mark.parametrize("case", [c for c in CASES if "arda" in c or "ainur" in c], ids=lambda c: c["name"])
def test_a_day2_case_carries_outputs_preview_reads(case: dict[str, Any]) -> None:
    # Outputs as a deployment writes them: `pulumi preview` and `render --previous` refuse unreadable ones before any rule.
    assert day2.unreadable({key: case[key] for key in ("arda", "ainur") if key in case}) is None


def test_the_fix_a_never_running_drill_is_given_validates_beside_its_stale_after(tmp_path: Path) -> None:
    # The schedule and the staleAfter the message gives, written back into the same stack: it validates, no warning.
    case = next(c for c in CASES if c["name"] == "data-drill-schedule-never-runs-beside-a-stale-after")
    fix = case["expect"][0].rsplit("; write ", 1)[1]
    schedule, stale = re.fullmatch(
        r"(.+), and staleAfter at least \d+h, its \d+d and a drill's 3h \(e\.g\. (\d+d)\), or leave staleAfter out", fix
    ).groups()  # type: ignore[union-attr]
    path = write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:backup.drill": {"schedule": schedule, "staleAfter": stale}}))
    assert warnings(load_stack_file(path, require_secrets=True)) == []


def test_a_client_namespace_a_layer_would_make_is_admitted_when_it_is_a_category_of_the_stack(tmp_path: Path) -> None:
    # Without iluvatar:backup no VolSync runs in volsync-system, but a category by that name is its apps' namespace;
    # monitoring, a default category, is made whether iluvatar:monitoring is set or not.
    case = next(c for c in CASES if c["name"] == "app-port-client-namespaces-of-backup-and-secrets-left-off")
    clients = [{"namespace": "volsync-system"}, {"namespace": "monitoring"}]
    doc = edit(homelab_doc(), {"iluvatar:apps[6].clients": clients, "iluvatar:gitops.categories": ["volsync-system"]}, case["delete"])
    doc = edit(doc, None, ["iluvatar:monitoring", "iluvatar:alertReceiverSecret"])
    path = write_stack(tmp_path, doc)
    assert load_stack_file(path, require_secrets=True).apps[6].clients[0].namespace == "volsync-system"


@pytest.mark.parametrize(
    "name",
    [
        "dns-server-at-the-front-door-and-at-headscale",
        "dns-server-at-an-arda-machine-without-the-ainur",
        "dns-server-on-a-vlan-at-a-vlan-machine",
        "headscale-on-the-nfs-classs-server",
        "headscale-on-the-nfs-classs-server-beside-a-dns-server-at-a-machine",
        "remote-access-headscale-address-taken",
    ],
)
def test_the_free_addresses_offered_to_the_homelabs_own_keys_validate_together(name: str, tmp_path: Path) -> None:
    # Each message's key given the address it offers (`give it a free one (e.g. <address>)`, or `give <key> ...`), all
    # at once: valid.
    case = next(c for c in CASES if c["name"] == name)
    offered = {}
    for message in case["expect"]:
        key, rest = message.split(": ", 1)
        offered[key] = re.search(r"give \S+ a free one \(e\.g\. ([0-9.]+)\)", rest).group(1)  # type: ignore[union-attr]
    doc = edit(edit(homelab_doc(), case.get("set"), case.get("delete")), offered, None)
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


@pytest.mark.parametrize("name", ["remote-access-route-wider-than-the-lan", "remote-access-route-wider-than-a-vlan"])
def test_the_routes_offered_for_a_route_wider_than_the_networks_validate(name: str, tmp_path: Path) -> None:
    # The routes the message gives in the wide one's place, written back: valid, and no warning about them.
    case = next(c for c in CASES if c["name"] == name)
    offered = re.search(r"route the homelab's own instead: ([0-9./, ]+?)(?: \(|$)", case["expect"][0]).group(1).split(", ")  # type: ignore[union-attr]
    remote = {**case["set"]["iluvatar:remoteAccess"], "routes": offered}
    path = write_stack(tmp_path, edit(homelab_doc(), {**case["set"], "iluvatar:remoteAccess": remote}))
    assert [w for w in warnings(load_stack_file(path, require_secrets=True)) if "routes" in str(w)] == []


@pytest.mark.parametrize(
    "name",
    [
        "github-groups-all-in-another-spelling-than-connector-orgs-and-named-by-remote-access",
        "github-group-by-the-teams-name-also-named-by-remote-access",
    ],
)
def test_a_groups_fixes_applied_as_written_validate(name: str, tmp_path: Path) -> None:
    # Each way out a message gives, written at every key it names: valid (no key is left with the old spelling).
    case = next(c for c in CASES if c["name"] == name)
    doc = edit(homelab_doc(), case.get("set"))
    fixes: list[dict[str, Any]] = [{}, {}]
    for message in case["expect"]:
        key, rest = message.split(": ", 1)
        fix = rest.rsplit("; write ", 1)[1]
        org = re.match(r"connector\.orgs\[(\d+)\] as (\S+) if .*?, or (.*)", fix)
        if org is not None:
            fixes[1][f"iluvatar:identity.connector.orgs[{org.group(1)}]"] = org.group(2)
            fix = org.group(3)
        group, _, there = fix.partition(" both here and at ")
        fixes[0][key] = group
        fixes[0].update({f"iluvatar:{path}": group for path in there.split(" and ") if path})
    for applied in [f for f in fixes if f]:
        load_stack_file(write_stack(tmp_path, edit(doc, applied)), require_secrets=True)


def test_secret_value_is_never_echoed(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["name"] == "token-in-plain-text")
    path = write_stack(tmp_path, edit(homelab_doc(), case["set"]))
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert "tok-PLAINTEXT-123" not in err.value.report()


def test_an_app_secret_in_plain_text_is_never_echoed(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["name"] == "data-user-secret-in-plain-text")
    path = write_stack(tmp_path, edit(homelab_doc(), case["set"]))
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert "wx-PLAINTEXT-987" not in err.value.report()


@pytest.mark.parametrize("case", [c for c in CASES if c["name"].startswith("credential-")], ids=lambda c: c["name"])
def test_a_credential_in_the_wrong_place_is_never_echoed(case: dict[str, Any], tmp_path: Path) -> None:
    # Every such case's credential carries PLAINTEXT; the message names its path and where it goes, never the value.
    assert "PLAINTEXT" in str(case.get("set")) or case["name"].startswith("credential-encrypted")
    path = write_stack(tmp_path, edit(homelab_doc(), case["set"], case.get("delete")))
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path, require_secrets=True)
    assert "PLAINTEXT" not in err.value.report()


def test_problems_from_every_section_are_reported_together(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:network.gateway": "10.0.0.1",
            "iluvatar:arda.talosVersion": "latest",
            "iluvatar:nodes[2].mac": "nope",
            "iluvatar:nodes[6].ip": "192.168.0.150",
        },
    )
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc))
    assert err.value.paths() == [
        "iluvatar:network.gateway",
        "iluvatar:arda.talosVersion",
        "iluvatar:nodes[2].mac",
        "iluvatar:nodes[6].ip",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "remote-access-headscale-url-with-a-path",
        "remote-access-headscale-url-with-a-user",
        "remote-access-headscale-url-with-a-user-and-a-path",
        "remote-access-headscale-url-with-a-query",
        "remote-access-headscale-url-with-a-port-a-path-and-a-fragment",
    ],
)
def test_the_fix_a_headscale_url_with_more_than_its_host_is_given_validates(name: str, tmp_path: Path) -> None:
    # The host alone, as the message writes it, in place of the URL with its user, path, query or fragment (a port
    # other than 443 left out, as said): the stack validates.
    case = next(c for c in CASES if c["name"] == name)
    fix = case["expect"][0].rsplit("; write ", 1)[1].split(" (without :", 1)[0]
    assert "@" not in fix
    remote = case["set"]["iluvatar:remoteAccess"]
    doc = edit(homelab_doc(), {"iluvatar:remoteAccess": {**remote, "headscale": {**remote["headscale"], "url": fix}}})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


def test_the_fix_a_time_sync_conflict_is_given_validates(tmp_path: Path) -> None:
    # The servers moved into the TimeSyncConfig document and machine.time.servers removed, as the message says.
    case = next(c for c in CASES if c["name"] == "talos-patch-time-servers-beside-a-time-sync-config")
    assert case["expect"][0].endswith("; write the servers in the document's ntp.servers and remove machine.time.servers")
    v1alpha1, document = case["set"]["iluvatar:arda.patches"]
    servers = v1alpha1["machine"]["time"].pop("servers")
    document["ntp"]["servers"] = servers
    doc = edit(homelab_doc(), {"iluvatar:arda.patches": [v1alpha1, document]})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


@pytest.mark.parametrize("name", ["talos-patch-host-entry-pins-zone-names-elsewhere", "talos-patch-static-host-config-pins-a-zone-name-elsewhere"])
def test_the_fix_a_host_entry_pinning_a_zone_name_is_given_validates(name: str, tmp_path: Path) -> None:
    # Each refused name removed from its entry, as the message says: the stack validates.
    case = next(c for c in CASES if c["name"] == name)
    refused = [m.split(": ", 1)[1].split(" is a name of the internal zone", 1)[0] for m in case["expect"]]
    assert all(f"; remove {n} from the entry (the zone already answers it)" in m for n, m in zip(refused, case["expect"], strict=True))
    key, patches = next(iter(case["set"].items()))
    for patch in patches:
        entries = patch["machine"]["network"]["extraHostEntries"] if "machine" in patch else [patch]
        for entry in entries:
            names = "aliases" if "aliases" in entry else "hostnames"
            entry[names] = [n for n in entry[names] if n not in refused]
    doc = edit(homelab_doc(), {key: patches})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


_MOVE_FIX = re.compile(
    r"; move the document(?:, with an address of its own \(e\.g\. (?P<offer>[0-9a-f:./]+)\),)? to iluvatar:(?P<to>nodes\[\d+\]\.talosPatches) "
    r"[^;]*?(?:, naming its NIC by an alias on its MAC there: (?P<alias>\{apiVersion: .*\}), and name: (?P<name>nic\d+))?$"
)
# The fix the install NIC's generated documents' refusal gives: another NIC, named by an alias on its MAC.
_ALIAS_NIC_FIX = re.compile(
    r"configure another NIC in the machine's own patches, named by an alias on its MAC \((?P<alias>apiVersion: .*\})\), with name: (?P<name>nic\d+)$"
)


def _move(document: dict[str, Any], found: re.Match[str], to: str) -> dict[str, Any]:
    """The patches the move fix gives `to`: the document, with the address offered and the NIC's alias where it says."""
    moved = copy.deepcopy(document)
    if found["offer"]:
        moved["addresses"] = [{"address": found["offer"]}]
    if found["alias"]:
        moved["name"] = found["name"]
        return {to: [yaml.safe_load(found["alias"].replace("<its mac>", "28:d2:44:30:00:99")), moved]}
    return {to: [moved]}


@pytest.mark.parametrize(
    "name",
    [
        "talos-patch-link-address-shared-by-every-arda-machine",
        "talos-patch-dummy-link-address-at-ardas-vip",
        "talos-patch-ipv6-link-address-shared-by-every-arda-machine",
        "talos-patch-shared-host-address-inside-the-lan",
        "talos-patch-shared-ipv6-host-address-on-a-vlan",
        "talos-patch-shared-host-address-on-an-unlisted-vlan",
        "talos-patch-second-address-on-lan0-shared-by-every-arda-machine",
    ],
)
def test_the_fix_a_link_address_in_arda_patches_is_given_validates(name: str, tmp_path: Path) -> None:
    # The document moved to the machine's own patches the message names, with the address it offers where it gives one
    # and its NIC named by the alias it gives: the stack validates, and warns of nothing there.
    case = next(c for c in CASES if c["name"] == name)
    found = next(m for e in case["expect"] if (m := _MOVE_FIX.search(e)) is not None)
    (document,) = case["set"]["iluvatar:arda.patches"]
    to = f"iluvatar:{found['to']}"
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), _move(document, found, to))), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path.startswith(to)] == []


@pytest.mark.parametrize("name", ["node-patch-overrides-the-generated-link", "talos-patch-second-address-on-lan0-shared-by-every-arda-machine"])
def test_the_other_nic_the_install_nics_link_config_refusal_offers_validates(name: str, tmp_path: Path) -> None:
    # The LinkConfig renamed to the alias, with the alias beside it in the machine's own patches (the first Arda
    # machine's for arda.patches): the stack validates, and warns of nothing there.
    case = next(c for c in CASES if c["name"] == name)
    found = next(m for e in case["expect"] if (m := _ALIAS_NIC_FIX.search(e)) is not None)
    ((where, patches),) = case["set"].items()
    to = "iluvatar:nodes[3].talosPatches" if where == "iluvatar:arda.patches" else where
    alias = yaml.safe_load("{" + found["alias"].replace("<its mac>", "28:d2:44:30:00:99") + "}")
    sets = {where: [], to: [alias, {**patches[0], "name": found["name"]}]}
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), sets)), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path.startswith(to)] == []


@pytest.mark.parametrize(
    ("name", "removed"),
    [
        ("talos-patch-shared-bridge-mac", ["hardwareAddr"]),
        ("talos-patch-bridge-on-another-machines-mac", ["hardwareAddr"]),
        ("talos-patch-shared-dhcp4-duid", ["clientIdentifier", "duidRaw"]),
        ("talos-patch-shared-dhcp6-duid", ["clientIdentifier", "duidRaw"]),
    ],
)
def test_the_fix_a_shared_identity_is_given_validates_and_warns_of_nothing_there(name: str, removed: list[str], tmp_path: Path) -> None:
    # The keys the message says to remove, removed: the stack validates, and nothing is warned of at the document.
    case = next(c for c in CASES if c["name"] == name)
    ((where, patches),) = case["set"].items()
    key = case["expect"][0].split(": ", 1)[0]
    assert key.rsplit(".", 1)[1] in removed
    document = patches[int(key.removeprefix(where).split("]", 1)[0].strip("["))]
    for field in removed:
        assert f"remove {' and '.join(removed)}" in case["expect"][0]
        del document[field]
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {where: patches})), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path.startswith(key.rsplit(".", 1)[0])] == []


_KERNEL_NAME_FIX = re.compile(r"(?P<each>move the rule to the own patches of each Arda machine \((?P<to>[^)]*)\), )?.*?\(.*?(?P<enx>enx[0-9a-f]{12})")


@pytest.mark.parametrize("name", ["talos-patch-routing-rule-on-another-machines-enx-name", "talos-patch-shared-routing-rule-on-an-alias"])
def test_the_kernel_name_a_routing_rule_is_given_validates(name: str, tmp_path: Path) -> None:
    # The rule names the machine's install NIC by its enx name, in each machine's own patches where the message moves
    # it there (each its own MAC's name).
    case = next(c for c in CASES if c["name"] == name)
    key, message = case["expect"][0].split(": ", 1)
    found = _KERNEL_NAME_FIX.search(message.split("; ", 1)[1])
    assert found is not None
    ((where, patches),) = case["set"].items()
    field = key.rsplit(".", 1)[1]
    doc = edit(homelab_doc(), {})
    nodes = doc["config"]["iluvatar:nodes"]
    if found["each"]:
        sets = {}
        for to in found["to"].split(", "):
            i = int(to.split("[", 1)[1].split("]", 1)[0])
            sets[to] = [{**patches[0], field: f"enx{nodes[i]['mac'].replace(':', '')}"}]
        sets[where] = []
    else:
        sets = {where: [{**patches[0], field: found["enx"]}]}
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), sets)), require_secrets=True)


_POOL_FIX = re.compile(r"^iluvatar:arda\.discovery\.pool: .*, e\.g\. \{start: (?P<start>[0-9.]+), end: (?P<end>[0-9.]+)\}$")


@pytest.mark.parametrize("case", [c for c in CASES if any(_POOL_FIX.match(e) for e in c["expect"])], ids=lambda c: c["name"])
def test_the_discovery_pool_a_message_offers_is_one_every_rule_takes(case: dict[str, Any], tmp_path: Path) -> None:
    found = next(m for e in case["expect"] if (m := _POOL_FIX.match(e)))
    doc = edit(homelab_doc(), case.get("set"), case.get("delete"))
    doc["config"]["iluvatar:arda"]["discovery"]["pool"] = {"start": found["start"], "end": found["end"]}
    path = write_stack(tmp_path, doc)
    try:
        load_stack_file(path, require_secrets=True)
        left = []
    except StackConfigError as err:
        left = [str(p) for p in err.problems]
    # No problem of the pool's is left, and the fix brings none of its own (a route the pool held goes with it).
    assert [p for p in left if p.startswith("iluvatar:arda.discovery")] == []
    assert set(left) <= set(case["expect"])


@pytest.mark.parametrize(
    "name",
    [
        "kernel-arg-ip-no-address-no-dhcp",
        "kernel-arg-ip-client-alone",
        "kernel-arg-ip-client-alone-not-the-one-machines-own",
        "kernel-arg-ip-gateway-of-another-subnet",
        "kernel-arg-ip-netmask-wider-than-the-subnet",
    ],
)
def test_the_ip_kernel_argument_an_ip_message_offers_validates(name: str, tmp_path: Path) -> None:
    # The whole argument a message offers (`write ip=...`), or the router it names for the gateway field, in place of
    # the one written: valid.
    case = next(c for c in CASES if c["name"] == name)
    (message,) = case["expect"]
    key, rest = message.split(": ", 1)
    written = rest.split(": ", 1)[0]
    if (whole := re.search(r"write (ip=\S+),", rest)) is not None:
        fixed = whole.group(1)
    else:
        field = 3 if "netmask" in rest else 2
        value = re.search(r"write ([0-9.]+) there", rest).group(1)  # type: ignore[union-attr]
        fields = written.split(":")
        fixed = ":".join([*fields[:field], value, *fields[field + 1 :]])
    board = key.removeprefix("iluvatar:arda.kernelArgs.").split("[")[0]
    doc = edit(homelab_doc(), {**case["set"], "iluvatar:arda.kernelArgs": {board: [fixed]}}, None)
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
