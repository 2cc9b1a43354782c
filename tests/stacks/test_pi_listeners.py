"""The Pis' listeners (stacks.pi_listeners.PI_LISTENERS) held to the plans that open them: a port the plans move, or a
listener they add, fails here before the rule checks the servers against a stale table."""

from __future__ import annotations

from typing import Any

from plans import k3s
from plans.netboot import pods
from plans.netboot.dnsmasq import dnsmasq_conf
from plans.netboot.nfs import ganesha_conf
from plans.netboot.nginx import nginx_conf
from plans.nfs_guard import MOUNT_PORT, NFS_PORT
from stacks.pi_listeners import PI_LISTENERS
from tests.plans.test_netboot_pis import netbooting


def _ports(where: str) -> set[tuple[int, str]]:
    return {key for key, listener in PI_LISTENERS.items() if listener.where == where}


def _container_ports(obj: Any) -> set[tuple[int, str]]:
    """Every containerPort of a pod's template, found wherever it sits."""
    found: set[tuple[int, str]] = set()
    if isinstance(obj, dict):
        if "containerPort" in obj:
            found.add((obj["containerPort"], obj.get("protocol", "TCP").lower()))
        for value in obj.values():
            found |= _container_ports(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= _container_ports(value)
    return found


def test_the_netboot_pods_ports_are_the_tables() -> None:
    pod = pods.netboot_pod([], "dnsmasq")
    assert _container_ports(pod) == _ports("netboot")
    assert pod["hostNetwork"] is True


def test_nginx_listens_on_every_address_and_dnsmasq_on_the_service_address() -> None:
    stack = netbooting()
    assert stack.ainur is not None
    assert "  listen 80;" in nginx_conf(stack).splitlines()  # no address: every address
    assert PI_LISTENERS[(80, "tcp")].bound == "every"
    conf = dnsmasq_conf(stack).splitlines()
    assert "bind-dynamic" in conf and f"listen-address={stack.ainur.service_ip}" in conf
    assert {PI_LISTENERS[(53, p)].bound for p in ("tcp", "udp")} | {PI_LISTENERS[(69, "udp")].bound} == {"service"}


def test_pi_nfs_binds_the_service_address_on_the_tables_ports() -> None:
    stack = netbooting()
    assert stack.ainur is not None
    conf = ganesha_conf(stack)
    assert f"Bind_addr = {stack.ainur.service_ip};" in conf
    assert f"NFS_Port = {NFS_PORT};" in conf and f"MNT_Port = {MOUNT_PORT};" in conf
    assert _ports("pi-nfs") == {(NFS_PORT, "tcp"), (MOUNT_PORT, "tcp")}
    assert {PI_LISTENERS[k].bound for k in _ports("pi-nfs")} == {"service"}


def test_k3s_and_kube_vip_on_the_valar() -> None:
    stack = netbooting()
    assert PI_LISTENERS[(k3s.API_PORT, "tcp")].where == "valar"
    # kube-vip's metrics stay on its default :2112: the valar's static pod sets no prometheus_server.
    env = {e["name"] for c in k3s.kube_vip_manifest(stack)["spec"]["containers"] for e in c.get("env", [])}
    assert "prometheus_server" not in env and PI_LISTENERS[(2112, "tcp")].where == "valar"
