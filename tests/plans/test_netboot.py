"""Netboot: dnsmasq configs pass the real `dnsmasq --test`; manifests pass kubernetes-validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings

from plans import k3s, netboot
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.strategies import raw_stacks
from tests.tools import dnsmasq_test

K3S_KUBERNETES = "1.33"  # the minor of the pinned k3s (v1.33.6+k3s1)


def variant(**netboot_settings: Any) -> StackConfig:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": netboot_settings}
    return parse_stack(raw)


VARIANTS = {
    "homelab": lambda: load_stack_file(HOMELAB),
    "proxy": lambda: variant(mode="proxy"),
    "dhcp-generic-worker": lambda: variant(
        mode="dhcp", unknownMacs="generic-worker", genericWorker={"board": "generic-x86", "installDisk": "/dev/sda"}
    ),
    "proxy-generic-worker": lambda: variant(
        mode="proxy", unknownMacs="generic-worker", genericWorker={"board": "generic-arm64", "installDisk": "/dev/nvme0n1"}
    ),
}


def test_the_dnsmasq_check_can_fail(tmp_path: Path) -> None:
    result = dnsmasq_test("dhcp-range=192.168.0.100,not-an-address\n", tmp_path)
    assert result.returncode != 0
    assert "bad dhcp-range" in result.stderr


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_dnsmasq_accepts_every_mode(name: str, tmp_path: Path) -> None:
    result = dnsmasq_test(netboot.dnsmasq_conf(VARIANTS[name]()), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax check OK" in result.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_stacks())
def test_dnsmasq_accepts_configs_of_random_stacks(tmp_path: Path, raw: dict[str, Any]) -> None:
    stack = parse_stack(raw)
    if stack.ainur is None:
        return
    result = dnsmasq_test(netboot.dnsmasq_conf(stack), tmp_path)
    assert result.returncode == 0, result.stderr


def test_homelab_reservations_and_pxe() -> None:
    conf = netboot.dnsmasq_conf(load_stack_file(HOMELAB)).splitlines()
    hosts = [line for line in conf if line.startswith("dhcp-host=")]
    assert len(hosts) == 8
    assert "dhcp-host=a8:b8:e0:20:00:02,set:known,set:netboot,192.168.0.22,tirion,infinite" in hosts
    assert "dhcp-host=d8:3a:dd:10:00:01,set:known,192.168.0.11,manwe,infinite" in hosts  # Pis are reserved, never netbooted
    assert "dhcp-range=192.168.0.100,192.168.0.199,255.255.255.0,12h" in conf
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:bios,undionly.kpxe" in conf
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:uefi-x86_64,ipxe.efi" in conf
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:uefi-arm64,ipxe-arm64.efi" in conf
    assert not any("tag:!known" in line for line in conf), "unknown MACs must not be booted by default"


def test_proxy_mode_hands_out_no_addresses() -> None:
    conf = netboot.dnsmasq_conf(variant(mode="proxy")).splitlines()
    assert "dhcp-range=192.168.0.0,proxy,255.255.255.0" in conf
    assert "dhcp-host=a8:b8:e0:20:00:02,set:known,set:netboot" in conf
    assert not any(line.startswith("dhcp-option=option:router") for line in conf)


def test_scripts_chain_by_mac_to_the_talos_config() -> None:
    stack = load_stack_file(HOMELAB)
    scripts = netboot.scripts(stack)
    assert sorted(scripts) == [
        "28-d2-44-30-00-01.ipxe",
        "28-d2-44-30-00-02.ipxe",
        "a8-b8-e0-20-00-01.ipxe",
        "a8-b8-e0-20-00-02.ipxe",
        "a8-b8-e0-20-00-03.ipxe",
        "boot.ipxe",
    ]
    assert "chain http://${next-server}/ipxe/${mac:hexhyp}.ipxe || goto unknown" in scripts["boot.ipxe"]
    assert scripts["boot.ipxe"].rstrip().endswith("exit")
    tirion = scripts["a8-b8-e0-20-00-02.ipxe"]
    assert "talos.config=http://${next-server}/configs/a8-b8-e0-20-00-02.yaml" in tirion
    assert "kernel http://${next-server}/assets/generic-x86/vmlinuz talos.platform=metal" in tirion


def test_manifests_validate_against_kubernetes_schemas() -> None:
    for name, build in VARIANTS.items():
        stack = build()  # type: ignore[no-untyped-call]
        objects = [*netboot.manifests(stack, netboot.config_macs(stack)), k3s.kube_vip_manifest(stack)]
        assert len(objects) >= 8
        for obj in objects:
            assert kubernetes_validate.validate(obj, K3S_KUBERNETES, strict=True) == K3S_KUBERNETES, (name, obj["kind"])


def test_the_kubernetes_check_can_fail() -> None:
    [deployment] = [m for m in netboot.manifests(load_stack_file(HOMELAB), []) if m["metadata"]["name"] == "netboot" and m["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["hostNetwerk"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K3S_KUBERNETES, strict=True)


def test_pod_restarts_when_what_it_serves_changes() -> None:
    def digest(stack: StackConfig) -> str:
        [d] = [m for m in netboot.manifests(stack, netboot.config_macs(stack)) if m["kind"] == "Deployment" and m["metadata"]["name"] == "netboot"]
        return str(d["spec"]["template"]["metadata"]["annotations"]["iluvatar/config-digest"])

    assert digest(load_stack_file(HOMELAB)) == digest(load_stack_file(HOMELAB))
    assert digest(load_stack_file(HOMELAB)) != digest(variant(mode="proxy"))
