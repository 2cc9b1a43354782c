"""A netbooted maia's guard of the NFS server of its own root against its pods.

The NFS server (plans.netboot.nfs) takes a client's word for its uid (NFSv3 AUTH_SYS) and a Pi's root is root's
(No_Root_Squash), checked by client address alone. A pod on a netbooted maia reaches the service address through the
Pi, masqueraded by flannel to the Pi's own address, which is the one its export is offered to. These rules, run on the
Pi before k3s starts a pod, drop that traffic. A leaf module: cloud-init's user-data (plans.cloudinit) writes the unit.
"""

from __future__ import annotations

from stacks.model import StackConfig

# NFS, as klibc's nfsmount speaks it (usr/kinit/nfsmount/main.c and mount.c): NFSv3 over TCP by default, no lock
# manager, and the MOUNT protocol's port asked of the portmapper, or 627 (sunrpc.h's MOUNT_PORT) when none answers.
# The server listens on both fixed ports, so a Pi needs no portmapper on the service address.
NFS_PORT = 2049
MOUNT_PORT = 627
# k3s's pod network (its --cluster-cidr default, docs.k3s.io cli/server; plans.k3s sets none): where a pod's packets come from
# before flannel masquerades them to the Pi's own address on the way out.
POD_CIDR = "10.42.0.0/16"
UNIT = "/etc/systemd/system/iluvatar-nfs-guard.service"


def rules(stack: StackConfig) -> list[list[str]]:
    """iptables rules a netbooted maia runs before k3s starts: its pods reach none of the NFS server's ports on the service
    address (rpcbind 111, MOUNT 627, NFS 2049). The server takes a client's word for its uid (AUTH_SYS) and the Pi's root
    is root's (No_Root_Squash): a pod here, masqueraded to the Pi's own address, would otherwise write the Pi's root as
    root, a container escape. In the raw table's PREROUTING, where a pod's packet still has its pod address (flannel
    masquerades it at POSTROUTING) and before conntrack or k3s's own chains: k3s never flushes it."""
    assert stack.ainur is not None
    svc = str(stack.ainur.service_ip)
    base = ["-t", "raw", "PREROUTING", "-s", POD_CIDR, "-d", svc]
    return [
        [*base, "-p", "tcp", "-m", "multiport", "--dports", f"111,{MOUNT_PORT},{NFS_PORT}", "-j", "DROP"],
        [*base, "-p", "udp", "--dport", "111", "-j", "DROP"],
    ]


def unit(stack: StackConfig) -> str:
    """The systemd unit that puts `rules` in place at every boot, before k3s-agent starts a pod (written by
    cloud-init, plans.cloudinit). Each rule is checked first (`iptables -C`), so a restart adds none twice."""
    execs = []
    for rule in rules(stack):
        table, chain, rest = rule[1], rule[2], " ".join(rule[3:])
        execs.append(f"ExecStart=/bin/sh -c 'iptables -t {table} -C {chain} {rest} 2>/dev/null || iptables -t {table} -I {chain} {rest}'")
    return (
        "\n".join(
            [
                "# Written by Iluvatar (plans.nfs_guard.unit): this Pi's root is NFS, writable as root; no pod here may reach its server.",
                "[Unit]",
                "Description=Iluvatar: this Pi's pods reach no port of the NFS server of its root",
                "Before=k3s-agent.service k3s.service",
                "[Service]",
                "Type=oneshot",
                "RemainAfterExit=yes",
                *execs,
                "[Install]",
                "WantedBy=multi-user.target",
            ]
        )
        + "\n"
    )
