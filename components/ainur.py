"""Ainur: the Raspberry Pi bootstrap cluster (k3s) that serves what every other machine boots from.

Each Pi gets a cloud-init user-data file to flash (no secrets in it), then Pulumi joins it to
k3s over SSH with a generated token, reads the kubeconfig from the first valar, points it at
the Ainur VIP, and builds the Kubernetes provider every Ainur workload uses.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random

from plans import cloudinit, k3s
from stacks.model import Node, StackConfig

USER_DATA_DIR = "out"


@dataclass(frozen=True)
class BootstrapClusterArgs:
    """The Ainur's input: the validated stack, and the SSH private key (None: use the SSH agent)."""

    stack: StackConfig
    ssh_private_key: pulumi.Output[str] | None


@dataclass(frozen=True)
class PiArgs:
    """One Pi: its inventory entry, the join token, and how to reach it."""

    node: Node
    stack: StackConfig
    token: pulumi.Output[str]
    connection: command.remote.ConnectionArgs
    command_provider: command.Provider
    after: Sequence[pulumi.Resource]


def user_data_path(stack_name: str, node: Node, kind: str = "user-data") -> str:
    """Where a Pi's cloud-init file is written: `kind` is user-data or network-config."""
    return f"{USER_DATA_DIR}/{stack_name}/ainur/{node.name}.{kind}"


class Pi(pulumi.ComponentResource):
    """One Ainur machine: its user-data and network-config files to flash, and its k3s join over SSH."""

    user_data: str
    network_config: str
    join: command.remote.Command

    def __init__(self, name: str, args: PiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:ainur:Pi", name, None, opts)
        node, stack = args.node, args.stack
        self.user_data = cloudinit.user_data(stack, node)
        self.network_config = cloudinit.network_config(stack, node)
        for kind, text in (("user-data", self.user_data), ("network-config", self.network_config)):
            path = user_data_path(pulumi.get_stack(), node, kind)
            command.local.Command(
                f"{name}-{kind}",
                create=f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && cat > {shlex.quote(path)}",
                delete=f"rm -f {shlex.quote(path)}",
                stdin=text,
                logging=command.local.Logging.NONE,
                opts=pulumi.ResourceOptions(parent=self, provider=args.command_provider),
            )
        # Secret before it is used, whatever the random provider marks: the config carries the token.
        config = pulumi.Output.secret(args.token).apply(lambda token: k3s.config(stack, node, token))  # type: ignore[arg-type]
        self.join = command.remote.Command(
            f"{name}-join",
            connection=args.connection,
            create=k3s.join_command(node),
            stdin=config,
            # The config carries the join token: never log what the Pi prints back.
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.command_provider, depends_on=args.after, additional_secret_outputs=["stdout", "stderr"]
            ),
        )
        self.register_outputs({"userData": self.user_data, "networkConfig": self.network_config})


class BootstrapCluster(pulumi.ComponentResource):
    """Ainur: the k3s bootstrap cluster of valar (servers) and maiar (agents)."""

    pis: dict[str, Pi]
    user_data: dict[str, str]
    kubeconfig: pulumi.Output[str]
    kubernetes_provider: k8s.Provider

    def __init__(self, name: str, args: BootstrapClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.stack.by_role("valar"):
            # Validation refuses this (k3s etcd quorum); a stack that got here without it gets a plain error, not an IndexError.
            raise pulumi.RunError(
                "iluvatar:nodes: the Ainur have 0 valar (k3s servers); k3s needs one to start its cluster (add a Pi with role: valar)"
            )
        super().__init__("iluvatar:ainur:BootstrapCluster", name, None, opts)
        stack = args.stack
        assert stack.ainur is not None
        child = pulumi.ResourceOptions(parent=self)
        command_provider = command.Provider(f"{name}-command", opts=child)
        random_provider = random.Provider(f"{name}-random", opts=child)
        token = random.RandomPassword(
            f"{name}-k3s-token",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, provider=random_provider),
        )

        def connect(node: Node) -> command.remote.ConnectionArgs:
            assert stack.ainur is not None
            return command.remote.ConnectionArgs(host=str(node.ip), user=stack.ainur.ssh_user, private_key=args.ssh_private_key)

        self.pis = {}
        first = stack.by_role("valar")[0]
        for node in [first, *(n for n in stack.ainur_nodes if n.name != first.name)]:
            after = [] if node.name == first.name else [self.pis[first.name].join]
            self.pis[node.name] = Pi(
                f"{name}-{node.name}",
                PiArgs(node=node, stack=stack, token=token.result, connection=connect(node), command_provider=command_provider, after=after),
                opts=child,
            )
        self.user_data = {n: pi.user_data for n, pi in self.pis.items()}

        read = command.remote.Command(
            f"{name}-kubeconfig",
            connection=connect(first),
            create="sudo cat /etc/rancher/k3s/k3s.yaml",
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(
                parent=self, provider=command_provider, depends_on=[self.pis[first.name].join], additional_secret_outputs=["stdout"]
            ),
        )
        self.kubeconfig = pulumi.Output.secret(read.stdout.apply(lambda text: k3s.rewrite_kubeconfig(text, stack)))
        self.kubernetes_provider = k8s.Provider(f"{name}-kubernetes", kubeconfig=self.kubeconfig, opts=child)
        self.register_outputs({"userData": self.user_data, "kubeconfig": self.kubeconfig})
