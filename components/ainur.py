"""Ainur: the Raspberry Pi bootstrap cluster (k3s) that serves what every other machine boots from.

The Pis are flashed before any `pulumi up`, with the cloud-init files `iluvatar render` writes (no
secrets in them; they are also this component's outputs). `pulumi up` then joins each Pi to k3s
over SSH with a generated token, one Pi after the other (the first valar, the other valar, the
maiar): the join retries SSH while the Pi boots, waits for cloud-init to finish, and returns once k3s
serves on that Pi, its Node is Ready again and, on a valar, etcd is healthy with every member. A
change of the config restarts k3s, so the same chain rolls a shared setting one Pi at a time
(plans.k3s.join_script). The kubeconfig is read from the first valar and pointed at the Ainur VIP; a
gate waits until the API answers through the VIP before the Kubernetes provider every Ainur workload
uses is configured.

A dead Pi is rebuilt with `pulumi up --replace` of its own join (and oidc) step, which runs the join
again on the new SD card and leaves every other resource as it is (docs/day2.md, "A dead Pi rebuilt"):
so no step of a Pi deletes anything when it is replaced. k3s's uninstall, for a Pi that leaves the
inventory or `pulumi destroy`, is the `delete` of a resource of its own (`<pi>-uninstall`) that
nothing depends on and no runbook replaces.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import arda as arda_component
from components import kube, steps
from components.steps import ClusterAccess
from plans import agent_token, apiserver, bringup, cloudinit, k3s, rollout
from plans import credentials as credentials_plan
from plans.netboot import pi_pods, roll
from stacks import day2, netboot_mode
from stacks.model import Node, StackConfig


@dataclass(frozen=True)
class BootstrapClusterArgs:
    """The Ainur's input: the validated stack, the SSH private key (None: use the SSH agent), and
    the Pis the last deployment knew by name (the output `ainur`'s nodes: a renamed Pi keeps its resources)."""

    stack: StackConfig
    ssh_private_key: pulumi.Output[str] | None
    deployed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The local CA the valar's API servers trust Dex through (with iluvatar:identity, plans.apiserver).
    ca_certificate: pulumi.Output[str] | None = None
    # The last deployment's output `ainur` (empty on the first one): the day-2 plan compares against it.
    previous: Mapping[str, Any] = field(default_factory=dict)
    # The last deployment's output `dnsmasqConf`: which Pis it netbooted where `previous` does not say (legacy_roots).
    previous_dnsmasq_conf: str | None = None


@dataclass(frozen=True)
class PiRoll:
    """What moves a netbooting maia to a new image (plans.netboot.roll): the first valar (its drain and uncordon run
    there, with k3s's admin kubectl), and the Ainur's Kubernetes provider and access for its boot pointer."""

    valar: command.remote.ConnectionArgs
    kubernetes: k8s.Provider
    access: ClusterAccess


@dataclass(frozen=True)
class AgentJoin:
    """What a maia joins with: a bootstrap token of its own (plans.agent_token), its Secret made with the Ainur's
    Kubernetes provider, and the token pinned to the cluster CA's hash read on the first valar."""

    ca_hash: pulumi.Output[str]
    kubernetes: k8s.Provider
    access: ClusterAccess
    random_provider: random.Provider


@dataclass(frozen=True)
class PiArgs:
    """One Pi: its inventory entry, the join token, and how to reach it."""

    node: Node
    stack: StackConfig
    # The cluster's server token: a valar's join token (a maia never gets it: `agent`).
    token: pulumi.Output[str]
    connection: command.remote.ConnectionArgs
    command_provider: command.Provider
    # The previous Pi's join and k3s step: a config change or an upgrade restarts k3s, one Pi at a time (each waits for its Pi healthy).
    after: Sequence[pulumi.Resource]
    # The name the last deployment knew this Pi by, when it was renamed since.
    former: str | None = None
    # The previous Pi's k3s step: upgrades go one Pi at a time, servers first.
    upgrade_after: Sequence[pulumi.Resource] = ()
    # A valar's API server's authentication config (iluvatar:identity), installed before k3s is told to read it.
    authentication: pulumi.Output[str] | None = None
    # A netbooting maia: what moves it to a new image before its join.
    roll: PiRoll | None = None
    # A maia: its own agent token (required for one; a valar joins with `token`).
    agent: AgentJoin | None = None
    # Its k3s step's trigger for renewing its k3s certificates (plans.rollout.certificate_trigger; None: none yet).
    certificate_trigger: str | None = None
    # How its netboot gate reaches the valar holding the API VIP (BootstrapCluster.any_valar; None: no gate).
    any_valar: command.remote.ConnectionArgs | None = None
    # Its k3s certificates fall due but this run does not renew them (BootstrapCluster._trigger): its k3s step and its
    # netboot gate keep the inputs the state has, whatever the last outputs recorded.
    held: bool = False


SSH_PORT = 22
# How long a Pi due for its certificates' renewal has to accept a TCP connection on SSH, at preview as at `up`, before
# its renewal is left for a later run (BootstrapCluster._trigger): a Pi up answers in milliseconds on the LAN.
ANSWER_SECONDS = 3.0


def answers(address: str, port: int = SSH_PORT, seconds: float = ANSWER_SECONDS) -> bool:
    """Whether the Pi at `address` accepts a TCP connection on its SSH port within `seconds`."""
    try:
        with socket.create_connection((address, port), timeout=seconds):
            return True
    except OSError:
        return False


def k3s_step_digest(script: str) -> str:
    """What a Pi's netboot gate is triggered by, of its k3s step's script: a digest (the script itself is long, and the
    preview shows a trigger in full); a new script is a k3s step that runs (an update runs `create` when there is no
    `update`, pulumi-command v1.2.1 provider/pkg/provider/remote/commandController.go:62-82), so the gate runs after it."""
    return f"its k3s step's script sha256:{hashlib.sha256(script.encode()).hexdigest()}"


def pinned(connection: command.remote.ConnectionArgs, host_key: pulumi.Input[str]) -> command.remote.ConnectionArgs:
    """`connection` accepting only the host key `host_key` (an authorized_keys line: pulumi-command parses it with
    ssh.ParseAuthorizedKey and offers that key's algorithm alone)."""
    return steps.reconnect(connection, host_key=host_key)


class Pi(pulumi.ComponentResource):
    """One Ainur machine: the cloud-init files it was flashed with, and its k3s join over SSH (a netbooting maia: its
    move to the stack's image around them, plans.netboot.roll)."""

    user_data: str
    network_config: str
    join: command.remote.Command
    k3s: command.remote.Command
    uninstall: command.remote.Command
    # How to reach the Pi, for the steps of later layers on it (the journal's forwarder, components.logs).
    connection: command.remote.ConnectionArgs
    command_provider: command.Provider
    # Its last step: the next Pi's steps wait for it (a netbooting maia's uncordon, any other Pi's k3s step).
    last: command.remote.Command

    def __init__(self, name: str, args: PiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:ainur:Pi", name, None, opts)
        node, stack = args.node, args.stack
        self.connection, self.command_provider = args.connection, args.command_provider
        # The name the last deployment knew it by, when renamed: the other layers' steps on this Pi move with it too.
        self.former = args.former
        self.user_data = cloudinit.user_data(stack, node)
        self.network_config = cloudinit.network_config(stack, node)
        former = name.removesuffix(node.name) + str(args.former)

        def aliased(step: str) -> list[pulumi.Alias] | None:
            return [pulumi.Alias(name=f"{former}-{step}")] if args.former else None

        before_join = list(args.after)
        if node.role == "valar":
            joins_with = args.token
        else:
            # A maia never holds the server token (admin access, the passphrase of k3s's bootstrap data): its own
            # bootstrap token, whose Secret exists before its join sends it (plans.agent_token).
            if args.agent is None:
                raise ValueError(f"the maia {node.name} has no agent token to join with (components.ainur.AgentJoin)")
            joins_with, bootstrap = self._agent_token(name, node, args.agent, aliased)
            before_join.append(bootstrap)
        # Secret before it is used, whatever the random provider marks: the config carries the token.
        token: pulumi.Output[str] = pulumi.Output.secret(joins_with)
        config = token.apply(lambda value: k3s.config(stack, node, value))
        if args.authentication is not None and node.role == "valar":
            # The file the config's kube-apiserver-arg names, and Dex's name in /etc/hosts, before k3s restarts with it.
            before_join.append(
                command.remote.Command(
                    f"{name}-oidc",
                    connection=args.connection,
                    create=apiserver.k3s_authentication_script(stack),
                    stdin=args.authentication,
                    opts=pulumi.ResourceOptions(parent=self, provider=args.command_provider, depends_on=list(args.after)),
                )
            )
        after_reboot: list[pulumi.Output[str]] | None = None
        connection = args.connection
        if args.roll is not None:
            # Drained on the first valar, its boot moved to the stack's image, rebooted into it (plans.netboot.roll).
            drain = command.remote.Command(
                f"{name}-drain",
                connection=args.roll.valar,
                create=roll.drain_script(stack, node),
                opts=pulumi.ResourceOptions(parent=self, provider=args.command_provider, depends_on=list(args.after), aliases=aliased("drain")),
            )
            pointer = k8s.core.v1.ConfigMap(
                f"{name}-boot",
                **{k: v for k, v in pi_pods.boot_configmap(stack, node).items() if k in ("metadata", "data")},
                opts=args.roll.access.with_cluster(
                    pulumi.ResourceOptions(parent=self, provider=args.roll.kubernetes, depends_on=[drain], aliases=aliased("boot"))
                ),
            )
            # Review 41-2 M4: the roll takes the Pi off its address for minutes while its join redials it and then sends
            # it the k3s token; whoever takes the address meanwhile must be refused. Its SSH host key, read once (trust
            # on first use: never read again, as nothing diffs), is pinned in the connection of every step on the Pi:
            # pulumi-command 1.2.1 then accepts that key alone (ssh.FixedHostKey, provider/pkg/provider/remote/
            # connection.go:87-94). A new root keeps the key (plans.netboot.nfs.KEPT_ON_NEW_IMAGE; cloud-init told not
            # to delete it: plans.cloudinit). A Pi rebuilt with a new key: its `hostKeyRead` up by one (below).
            # Review 41-3 C1: read after the pointer. A card-less Pi boots only once pi-tftp serves the folder its
            # pointer names (plans.netboot.pis: no pointer, `continue`), so on its first `up` the key is read at its
            # first boot (the step's dial retries, plans.k3s.SSH_DIAL_*, cover the boot); on a Pi already running, the
            # pointer's move has not rebooted it yet (the reboot step does, over the pinned connection), so the key
            # is read from the root it runs. Either way before the reboot step and the join, which sends the token.
            # `hostKeyRead` in the inventory names a new read (a Pi rebuilt with a new key): a new name is a new resource,
            # created with the program's connection, where a replacement would take the ignored connection from the old
            # state (pulumi engine v3.259.0 pkg/resource/deploy/step_generator.go:1264-1268) and `pulumi state delete`
            # is refused, the steps pinned to the key depending on it. Its dependents update; the old one goes (no delete).
            read = roll.host_key_step(node)
            host_key = command.remote.Command(
                f"{name}-{read}",
                connection=args.connection,
                create=roll.HOST_KEY_SCRIPT,
                # Review 41-3 L3: read once. A change of the unpinned connection (the operator's key rotated, another
                # ssh user, new dial settings) would otherwise run it again and trust whatever key answers then.
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.command_provider, depends_on=[pointer], aliases=aliased(read), ignore_changes=["connection"]
                ),
            )
            connection = pinned(args.connection, host_key.stdout)
            # Run again whenever the drain or the pointer ran (the drain's run mark, the pointer's resourceVersion,
            # both new on each run: plans.netboot.roll.RUN_MARK), whatever its own inputs: a failed step keeps the
            # inputs it had before in Pulumi's state, so after a roll that failed half-way, the image set back
            # runs the drain and the pointer but would find this step's stored inputs unchanged.
            reboot = command.remote.Command(
                f"{name}-reboot",
                connection=connection,
                create=roll.reboot_script(stack, node),
                triggers=[drain.stdout, pointer.metadata.resource_version],
                opts=pulumi.ResourceOptions(parent=self, provider=args.command_provider, depends_on=[pointer, host_key], aliases=aliased("reboot")),
            )
            before_join.append(reboot)
            # The join, the k3s step and the uncordon run again whenever the reboot step ran (its run mark): the Pi
            # may have rebooted, cordoned by the drain, so its gates and its uncordon must follow, even when the image
            # is set back to the one their stored inputs name (a roll that failed at the join).
            after_reboot = [reboot.stdout]
        self.join = command.remote.Command(
            f"{name}-join",
            connection=connection,
            create=roll.join_script(stack, node),
            # No delete: `pulumi up --replace` of this step (a rebuilt Pi) deletes the old one after the new one
            # ran, and an uninstall there would undo the join it just made. The uninstall is `uninstall`'s.
            stdin=config,
            # The config carries the join token: never log what the Pi prints back.
            logging=command.remote.Logging.NONE,
            triggers=after_reboot,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.command_provider,
                depends_on=before_join,
                additional_secret_outputs=["stdout", "stderr"],
                aliases=aliased("join"),
            ),
        )
        # Its k3s at the stack's version: a no-op on a Pi cloud-init installed at it, an upgrade (and the
        # wait for its Node to be Ready again) after a k3sVersion change, one Pi after the other.
        # It runs again, and restarts k3s so that k3s renews its certificates, when the last deployment recorded their end
        # within k3s's window (plans.rollout.certificate_trigger); its stdout says their end after it ran.
        k3s_triggers: list[Any] = [*(after_reboot or []), *([args.certificate_trigger] if args.certificate_trigger else [])]
        k3s_create = roll.k3s_script(stack, node, rollout.renewing_end(args.certificate_trigger))
        # A Pi held (its certificates due, but it did not answer, or its valar did not: BootstrapCluster._trigger): the
        # engine keeps its step's stored script and trigger, so the step is neither replaced nor run, and never dials a
        # Pi that does not answer. The last outputs cannot be trusted for them: an `up` that failed after this step ran
        # wrote none, while the state has the step's new trigger.
        held = ["triggers", "create"] if args.held else None
        self.k3s = command.remote.Command(
            f"{name}-k3s",
            connection=connection,
            create=k3s_create,
            triggers=k3s_triggers or None,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.command_provider,
                depends_on=[self.join, *args.upgrade_after],
                aliases=aliased("k3s"),
                ignore_changes=held,
            ),
        )
        # Leaving the inventory, or `pulumi destroy`: k3s is uninstalled. Nothing runs at create (pulumi-command
        # runs no create without one, remote/commandController.go:48-50) and nothing depends on it, so a Pi
        # removed for good while dead is forgotten with `pulumi state delete` of this one resource, and the next
        # `up` deletes the rest of the Pi, whose deletes run nothing. A renamed Pi keeps it (an alias): never
        # uninstalled. The order between Pis does not matter: k3s's uninstall script needs no cluster (k3s's
        # install.sh, create_uninstall: it runs k3s-killall.sh, then removes the service and the files).
        self.last = self.k3s
        if args.roll is not None:
            # Uncordoned once back and at its k3s version: then the next Pi.
            self.last = command.remote.Command(
                f"{name}-uncordon",
                connection=args.roll.valar,
                create=roll.uncordon_script(stack, node),
                triggers=after_reboot,
                opts=pulumi.ResourceOptions(parent=self, provider=args.command_provider, depends_on=[self.k3s], aliases=aliased("uncordon")),
            )
        # The household's DHCP and DNS back before the next Pi restarts (plans.netboot.roll.netboot_ready_script): run
        # whenever its k3s step runs, so on the k3s step's inputs (a digest of its script, which names the k3s version
        # and the end it renews, and its triggers), not on its stdout: a k3s upgrade restarts the Pi and prints the
        # same end as the run before (k3s keeps leaves not within their renewal window, and a maia's earliest is a
        # copy of its valar's), so a gate on the stdout was not run then. The next Pi's steps wait for it as for `last`.
        self.netboot_ready: command.remote.Command | None = None
        if args.any_valar is not None:
            self.netboot_ready = command.remote.Command(
                f"{name}-netboot-ready",
                connection=args.any_valar,
                create=roll.netboot_ready_script(node),
                triggers=[k3s_step_digest(k3s_create), *k3s_triggers],
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.command_provider, depends_on=[self.last], aliases=aliased("netboot-ready"), ignore_changes=held
                ),
            )
        self.uninstall = command.remote.Command(
            f"{name}-uninstall",
            connection=args.connection,
            delete=k3s.UNINSTALL_SCRIPT,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.command_provider,
                depends_on=[self.join],
                aliases=aliased("uninstall"),
            ),
        )
        self.register_outputs({"userData": self.user_data, "networkConfig": self.network_config})

    def _agent_token(self, name: str, node: Node, agent: AgentJoin, aliased: Any) -> tuple[pulumi.Output[str], k8s.core.v1.Secret]:
        """The maia's `K10<CA hash>::<id>.<secret>` and its kube-system/bootstrap-token-<id> Secret (plans.agent_token).

        Its own resources: adding a maia adds only these, removing it deletes its Secret (the token is revoked). The id
        is the token's public half (the Secret's name, the user `system:bootstrap:<id>` in the API server's logs); the
        secret half is a Pulumi secret. No expiration: a netbooted maia's new root re-joins with it."""
        child = pulumi.ResourceOptions(parent=self, provider=agent.random_provider)
        token_id = random.RandomString(
            f"{name}-token-id",
            length=agent_token.ID_LENGTH,
            special=False,
            upper=False,
            lower=True,
            numeric=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(aliases=aliased("token-id"))),
        )
        token_secret = random.RandomPassword(
            f"{name}-token-secret",
            length=agent_token.SECRET_LENGTH,
            special=False,
            upper=False,
            lower=True,
            numeric=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(aliases=aliased("token-secret"))),
        )
        plain: pulumi.Output[dict[str, str]] = pulumi.Output.all(token_id.result, token_secret.result).apply(
            lambda v: agent_token.secret_string_data(node, str(v[0]), str(v[1]))
        )
        data: pulumi.Output[dict[str, str]] = pulumi.Output.secret(plain)
        secret = k8s.core.v1.Secret(
            f"{name}-agent-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=token_id.result.apply(agent_token.secret_name), namespace=agent_token.NAMESPACE, labels=agent_token.labels(node)
            ),
            type=agent_token.SECRET_TYPE,
            string_data=data,
            opts=agent.access.with_cluster(pulumi.ResourceOptions(parent=self, provider=agent.kubernetes, aliases=aliased("agent-token"))),
        )
        full = pulumi.Output.all(agent.ca_hash, token_id.result, token_secret.result).apply(lambda v: agent_token.full_token(*map(str, v)))
        return pulumi.Output.secret(full), secret


class BootstrapCluster(pulumi.ComponentResource):
    """Ainur: the k3s bootstrap cluster of valar (servers) and maiar (agents)."""

    pis: dict[str, Pi]
    user_data: dict[str, str]
    network_config: dict[str, str]
    kubeconfig: pulumi.Output[str]
    kubernetes_provider: k8s.Provider
    access: ClusterAccess
    # The first valar over SSH: what a step that runs a command there connects with.
    connection: command.remote.ConnectionArgs
    ready: command.local.Command
    # What the Ainur run after this deployment: exported as `ainur`, read back next time.
    state: dict[str, Any]

    def __init__(self, name: str, args: BootstrapClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.stack.by_role("valar"):
            # Validation refuses this (k3s etcd quorum); a stack that got here without it gets a plain error, not an IndexError.
            raise pulumi.RunError(
                "iluvatar:nodes: the Ainur have 0 valar (k3s servers); k3s needs one to start its cluster (add a Pi with role: valar)"
            )
        super().__init__("iluvatar:ainur:BootstrapCluster", name, None, opts)
        stack = args.stack
        assert stack.ainur is not None
        self._stack = stack
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
            return command.remote.ConnectionArgs(
                host=str(node.ip),
                user=stack.ainur.ssh_user,
                private_key=args.ssh_private_key,
                # The Pi may still be booting: retry while sshd comes up (plans.k3s).
                dial_error_limit=k3s.SSH_DIAL_ATTEMPTS,
                per_dial_timeout=k3s.SSH_DIAL_SECONDS,
            )

        authentication = None
        if args.ca_certificate is not None and stack.identity is not None:
            authentication = args.ca_certificate.apply(lambda ca: apiserver.k3s_authentication(stack, ca))
        self.pis = {}
        first = stack.by_role("valar")[0]
        # A Pi renamed in the inventory (same MAC) keeps its resources: never a new join and an uninstall of the old.
        renamed = day2.former_names(stack, args.deployed)
        # The first valar, the other valar, then the maiar: k3s servers before agents (the order k3s upgrades in).
        # Joins go one after the other in the same order: a change of a key every config carries (tls-san, the
        # disabled add-ons, sign-in, snapshots) restarts k3s on every Pi, and two valar of three restarting at
        # once leave etcd without quorum, and the Ainur's API, VIP and netboot down. Each join returns only once
        # its Pi is back and, on a valar, etcd is healthy with every member (plans.k3s.join_script).
        # The netbooting maiar last: each joins only once the Ainur serve it its boot files and root (join_netbooted).
        maiar = stack.by_role("maiar")
        order = [
            first,
            *(n for n in stack.by_role("valar") if n.name != first.name),
            *(n for n in maiar if n.boot != "netboot"),
            *(n for n in maiar if n.boot == "netboot"),
        ]
        # One chain for both kinds of restart: a Pi's join waits for the previous Pi's k3s step too, so a run that
        # bumps the k3s version and changes a shared setting never restarts two Pis at once (each join and each
        # upgrade returns only once its Pi is back): join, k3s of one Pi, then the next Pi's.
        previous: list[pulumi.Resource] = []
        joined: list[pulumi.Resource] = []
        # The day of the run, against which the recorded ends of the Pis' k3s certificates fall due (plans.rollout).
        now = arda_component.today()
        # Each Pi's trigger, once: its step's and the output's. A Pi due for renewal that does not answer on SSH within
        # ANSWER_SECONDS keeps its last trigger, so its step is not replaced: a replaced step would dial it for the
        # dial bound (plans.k3s SSH_DIAL_ATTEMPTS) and fail, and every later Pi's step waits on it in the chain. A warning
        # names it; the others are renewed, and the next `up` it answers renews it.
        # `order` has the valar first: a maia's trigger is held while a valar's is (_trigger).
        self._held: dict[str, str] = {}
        self._triggers = {n.name: self._trigger(args.previous, n, now) for n in order}
        # A month before a recorded end, at every preview and `up`: the warning a stack without the monitoring layer
        # (no AinurCertificateExpiring) gets too.
        for n in order:
            if warning := rollout.certificate_warning(args.previous, n.name, now):
                pulumi.log.warn(warning, resource=self)
            if warning := rollout.clock_warning(args.previous, n.name):
                pulumi.log.warn(warning, resource=self)

        # The valar holding the API VIP, for each Pi's netboot gate (the first valar's own restart included: the VIP
        # comes back with a live server).
        any_valar = steps.reconnect(connect(first), host=str(stack.ainur.vip))

        def join(node: Node, after: Sequence[pulumi.Resource], roll: PiRoll | None = None, agent: AgentJoin | None = None) -> None:
            nonlocal previous, joined
            aliases = [pulumi.Alias(name=f"{name}-{renamed[node.name]}")] if node.name in renamed else None
            self.pis[node.name] = Pi(
                f"{name}-{node.name}",
                PiArgs(
                    node=node,
                    stack=stack,
                    token=token.result,
                    connection=connect(node),
                    command_provider=command_provider,
                    after=[*joined, *previous, *after],
                    former=renamed.get(node.name),
                    upgrade_after=previous,
                    authentication=authentication,
                    roll=roll,
                    agent=agent,
                    certificate_trigger=self._triggers[node.name],
                    any_valar=any_valar,
                    held=node.name in self._held,
                ),
                opts=pulumi.ResourceOptions(parent=self, aliases=aliases),
            )
            previous = [self.pis[node.name].last, *([gate] if (gate := self.pis[node.name].netboot_ready) else [])]
            joined = [self.pis[node.name].join]

        # The valar first: a maia's join needs its own token's Secret, made through the Ainur's API once the first valar
        # serves it (below); the card maiar then, and the netbooted ones in join_netbooted (still one Pi at a time).
        off_planned = not stack.ainur.secrets_encryption and day2.may_have_sealed(args.previous)
        # Which way the stack last asked for k3s's secrets encryption, kept in the state rather than in an output: its keepers
        # change with the flag, so the engine replaces it, and saves the new id to the state, in the `up` that turns the
        # flag off, before the off step (which waits on it) touches the valar. Its id is ainur-secrets-on's trigger, so the
        # first `up` with the flag after any `up` that got as far as the off step runs the on step again, even where that
        # `up` failed or was killed and wrote no outputs: the Python SDK registers the stack's outputs only once every
        # exported value resolves (sdk/python/lib/pulumi/runtime/stack.py:336-344, runtime/resource.py:1285), and the
        # `ainur` output waits on the steps after the off step, so a failed off-`up` leaves the last outputs as they were.
        # A second `up` with the same flag keeps the keepers and the id.
        self.secrets_epoch = random.RandomId(
            f"{name}-secrets-epoch",
            byte_length=4,
            keepers={"secretsEncryption": "on" if stack.ainur.secrets_encryption else "off"},
            opts=pulumi.ResourceOptions(parent=self, provider=random_provider),
        )
        if off_planned:
            # Before any valar is rolled without the flag, k3s's own disable on the first valar, its Secrets rewritten in
            # clear (plans.k3s.secrets_off_script): a valar without it reads no Secret stored sealed. Every step that can
            # restart a Pi's k3s waits on it (the first valar's join and k3s steps through `previous`, the rest after them).
            pulumi.log.warn(
                "the last deployment's Ainur ran k3s's secrets encryption, or its output does not say: before any valar is "
                f"rolled without it, {name}-secrets-off runs k3s's disable on {first.name} and rewrites every Secret in clear "
                "(k3s secrets-encrypt disable, a restart of k3s, reencrypt --force --skip); if it fails, no valar loses the flag",
                resource=self,
            )
            self.secrets_off: command.remote.Command | None = command.remote.Command(
                f"{name}-secrets-off",
                connection=connect(first),
                create=k3s.secrets_off_script(),
                # The on step's trigger, for the same reason the other way: an `up` that gives the flag back and fails
                # leaves this step in the state (the engine deletes what left the program only after a whole update
                # succeeded), and the next `up` without the flag would find it unchanged and not run it while k3s seals
                # again; each flag change replaces the epoch, so the step runs in the first `up` of every off period.
                triggers=[self.secrets_epoch.hex],
                logging=command.remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(parent=self, provider=command_provider, depends_on=[self.secrets_epoch]),
            )
            previous = [self.secrets_off]
        else:
            self.secrets_off = None
        for node in order:
            if node.role == "valar":
                join(node, ())
        if stack.ainur.secrets_encryption:
            # After the valar's roll with the flag and before the rewrite below: a config k3s kept identity-first from a
            # disable (it keeps any config it finds) turned back on, k3s restarted onto it if it has not loaded it, and
            # every Secret written in clear meanwhile sealed (plans.k3s.secrets_on_script). Not before the roll: k3s sets
            # its encryption config's path only with the flag (deps.go), so a server without it cannot enable.
            # In the program for as long as the stack asks for the flag, not only in the `up` that gives it back: a step
            # planned from the last outputs would be gone from the next `up` wherever those outputs say "on" while this
            # step never finished, and k3s would go on running identity-first. A Command whose create failed is not in the state and
            # the next `up` creates it again; one cut short (the `pulumi` process killed) is a pending create, which is not a
            # resource of the state either: the next `up` warns of it and goes on (pulumi/pulumi#9293, "Warn users when there
            # are pending operations but proceed with deployment"), creating the step again, as engine v3.259 did when it was
            # killed with creates in flight. It runs once on every Ainur with the flag (a fresh one: no restart, plans.k3s.FRESH_STAGE), and again in
            # the first `up` with the flag after any `up` that planned the off step, finished or not (its trigger): an
            # off-`up` that fails keeps it in the state, as the engine deletes only after a whole update succeeded.
            # A run over the record the last on or rewrite step left is one status read (plans.k3s).
            if day2.may_have_run_clear(args.previous):
                pulumi.log.warn(
                    "the last deployment's Ainur ran k3s without secrets encryption, or its output does not say: after the "
                    f"valar are rolled with it, {name}-secrets-on reads k3s's status on {first.name}, turns a config k3s kept "
                    "from a disable back on (k3s secrets-encrypt enable), restarts k3s there if it has not loaded that config, "
                    "and seals every Secret (reencrypt --force --skip)",
                    resource=self,
                )
            elif day2.before_secrets_on(args.previous):
                pulumi.log.warn(
                    f"the last deployment's Ainur ran k3s's secrets encryption with no {name}-secrets-on step (an older Iluvatar): "
                    f"this up creates it, and it restarts k3s on {first.name} once (the API away as in a roll) and rewrites every "
                    "Secret under k3s's key, since nothing there says the config k3s runs was loaded and every Secret sealed "
                    "under it (docs/day2.md#the-ainurs-secrets-sealed-by-k3s)",
                    resource=self,
                )
            elif day2.before_sealed_record(args.previous):
                pulumi.log.warn(
                    f"the last deployment's Ainur ran {name}-secrets-on from an Iluvatar whose rewrite step recorded nothing of the "
                    f"key it rotated to: this up runs the step again (its command changed), and it restarts k3s on {first.name} "
                    "once (the API away as in a roll) and rewrites every Secret under k3s's key, since the step's record names "
                    "the config before that rotation; from then on the rewrite step records the config it leaves",
                    resource=self,
                )
            self.secrets_on: command.remote.Command | None = command.remote.Command(
                f"{name}-secrets-on",
                connection=connect(first),
                create=k3s.secrets_on_script(),
                # A new trigger after every `up` that got as far as the off step, finished or not (the epoch above): the
                # engine keeps this step in the state through an off-`up` that fails (it deletes what left the program only
                # after a whole update succeeded), and would otherwise find it unchanged when the flag comes back while k3s
                # runs the identity-first config the off step left.
                triggers=[self.secrets_epoch.hex],
                logging=command.remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(parent=self, provider=command_provider, depends_on=previous),
            )
            previous = [self.secrets_on]
        else:
            self.secrets_on = None
        if stack.ainur.secrets_encryption:
            # Once every valar runs with k3s's secrets encryption (the joins above, one at a time): the Secrets written
            # before it rewritten under its key, once (plans.k3s.secrets_rewrite_script).
            self.secrets_rewrite: command.remote.Command | None = command.remote.Command(
                f"{name}-secrets-rewrite",
                connection=connect(first),
                create=k3s.secrets_rewrite_script(),
                logging=command.remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(parent=self, provider=command_provider, depends_on=previous),
            )
        else:
            self.secrets_rewrite = None
        # Every Pi's cloud-init files (a netbooting maia's are served in its root, plans.netboot.pis, not flashed).
        self.user_data = {n.name: cloudinit.user_data(stack, n) for n in order}
        self.network_config = {n.name: cloudinit.network_config(stack, n) for n in order}
        self._valar = connect(first)

        # How a step reaches the first valar over SSH (the credentials below; remote access's enrolment).
        self.connection = self._valar
        # How a step that needs k3s's admin access, run on every `up` that changes what it guards, reaches whichever
        # valar holds the API VIP: kube-vip's static pod, on the valar alone (plans.cloudinit), moves it to a live
        # server within its lease (plans.k3s), so the step waits on no one Pi. The same trust as the first valar's
        # connection: neither pins a host key (pulumi-command 1.2.1 pins one only when given `hostKey`, connection.go:87-94).
        self.any_valar = steps.reconnect(self._valar, host=str(stack.ainur.vip))
        # A token that does not expire, made on the first valar with k3s's own admin access (plans.credentials).
        credentials = command.remote.Command(
            f"{name}-credentials",
            connection=self.connection,
            create=credentials_plan.k3s_script(),
            # The token: never printed in Pulumi's output, kept secret in its state.
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self, provider=command_provider, depends_on=[self.pis[first.name].join], additional_secret_outputs=["stdout"]
            ),
        )
        built: pulumi.Output[str] = credentials.stdout.apply(lambda text: credentials_plan.kubeconfig(text, k3s.server_url(stack), name))
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(built)
        self.ready = steps.run(
            f"{name}-gate-api",
            bringup.kube_api_gate(name, k3s.server_url(stack)),
            command_provider,
            self,
            stdin=steps.secret_stdin({"kubeconfig": kubeconfig}),
            after=[credentials],
        )
        # The kubeconfig everything downstream uses carries the gate as its dependency: pulumi-kubernetes
        # checks its cluster once, when configured, and kube-vip takes the VIP only after k3s has started.
        self.kubeconfig = pulumi.Output.all(kubeconfig, self.ready.stdout).apply(lambda values: str(values[0]))
        # ConfigMaps updated in place: the netboot pod's dnsmasq follows its `netboot` ConfigMap's records while it runs
        # (plans.netboot.records), and a delete-then-create of it would leave a netboot pod started in between, and the
        # household's DHCP and DNS with it, waiting for its volume (kube.cluster_provider).
        self.kubernetes_provider = kube.cluster_provider(
            f"{name}-kubernetes", self.kubeconfig, name, self, after=[self.ready], mutable_config_maps=True
        )
        # The Ainur's objects go with the cluster: its join token is deleted only when the cluster is.
        self.access = ClusterAccess(name, self.kubeconfig, command_provider, anchor=token, identifier=name)
        # The cluster CA's hash, as k3s wrote it on the first valar (plans.agent_token): it pins every maia's token.
        # Nothing secret in what it prints (the hash alone); read once, after the first valar's join.
        ca_hash = command.remote.Command(
            f"{name}-ca-hash",
            connection=self.connection,
            create=agent_token.ca_hash_script(),
            opts=pulumi.ResourceOptions(parent=self, provider=command_provider, depends_on=[self.pis[first.name].join]),
        )
        agent = AgentJoin(ca_hash.stdout.apply(agent_token.parse_ca_hash), self.kubernetes_provider, self.access, random_provider)
        # Who may register a Node (plans.k3s.node_admission): in place before any maia joins with a token a netbooted
        # maia's root exposes; the policy before its binding.
        on_cluster = self.access.with_cluster(pulumi.ResourceOptions(parent=self, provider=self.kubernetes_provider))
        self.node_admission = kube.create_all(f"{name}", k3s.node_admission(stack), on_cluster)
        admission = list(self.node_admission.values())
        for node in order:
            if node.role != "valar" and node.boot != "netboot":
                join(node, admission, agent=agent)
        # The netbooted maiar: made by join_netbooted, once the netboot service that boots them exists.
        self._pending = [(n, renamed.get(n.name)) for n in order if n.boot == "netboot"]
        self._join = join
        self._agent = agent
        # What the Ainur run now, with each Pi's config digest and the roll's order: the next run's day-2 plan reads it.
        # Review 41-6 H1: the first version's volume of the netbooted roots stays only where the last deployment had it.
        self.legacy_roots = pi_pods.keeps_legacy_claim(args.previous, args.previous_dnsmasq_conf)
        self.state = {**rollout.ainur_state(stack, order), "legacyRoots": self.legacy_roots, day2.SECRETS_EPOCH: True}
        # Each Pi's k3s certificates: their earliest end as its k3s step last said it (kept when the step printed none),
        # and its step's trigger; the next run renews them from these (plans.rollout.certificate_trigger).
        # Every Pi's trigger now (the day-2 plan below names the Pis whose step it runs); the netbooted maiar's ends are
        # added as join_netbooted makes their steps.
        self._previous = args.previous
        self.state["certificates"] = {n.name: {"trigger": self._triggers[n.name]} for n in order}
        for n in order:
            if n.name in self.pis:
                self._record_end(n)
        if moved := rollout.describe_mode(netboot_mode.deployed_mode(args.previous_dnsmasq_conf), stack.ainur.netboot.mode):
            # A move between DHCP modes, first: what the household sees, and what the router needs and when (before `up`
            # for a move to dhcp; at netboot-router-dhcp's word for a move to proxy). stacks.netboot_mode has refused the
            # moves the stack does not say the router is ready for.
            pulumi.log.info(moved, resource=self)
        if args.previous and (plan := rollout.describe_ainur(args.previous, self.state)):
            # The Ainur's part of the day-2 plan, before anything runs: every Pi step that runs, in order, and why.
            pulumi.log.info(plan, resource=self)
        self.register_outputs({"userData": self.user_data, "networkConfig": self.network_config, "kubeconfig": self.kubeconfig})

    def join_netbooted(self, serving: Sequence[pulumi.Resource]) -> None:
        """Join the netbooting maiar, one after the other at the end of the chain, each once `serving` is: the netboot
        objects that serve a Pi its boot files and root (plans.netboot.pi_pods; pulumi-kubernetes awaits them ready),
        as Arda's installs wait for theirs. Each is first moved to the stack's image (plans.netboot.roll: its boot
        pointer made, on its first `up`; drained, moved and rebooted after a new image), and the next Pi's steps wait
        for its uncordon. The SSH retries of its reboot step and its join wait out the Pi's own boot."""
        for node, _ in self._pending:
            self._join(node, [*serving, *self.node_admission.values()], PiRoll(self._valar, self.kubernetes_provider, self.access), self._agent)
            self._record_end(node)
        self._pending = []

    def _trigger(self, previous: Mapping[str, Any] | None, node: Node, now: datetime.datetime) -> str | None:
        """Its k3s step's trigger (plans.rollout.certificate_trigger): a new one only when the Pi answers now and, on a
        maia, no valar is held. A Pi held keeps the last recorded one, and its step and gate keep what the state has
        (PiArgs.held)."""
        due = rollout.certificate_trigger(previous, node.name, now)
        kept = rollout.recorded_certificates(previous, node.name).get("trigger")
        kept = kept if isinstance(kept, str) else None
        if due == kept:
            return due
        end = rollout.recorded_certificates(previous, node.name).get("end")
        valar = [name for name, why in self._held.items() if why == "silent valar"]
        if node.role != "valar" and valar:
            # A maia's client-kube-proxy.crt and client-k3s-controller.crt are its valar's own files, fetched as its
            # agent starts (k3s pkg/agent/config/config.go get(): getHostFile, "These files are not unique to this
            # node"; pkg/server/handlers fileHandler(Runtime.ClientKubeProxyCert)): a restart before the valar's
            # renewal fetches the old ones, and its step then fails on the end that did not move, run after run.
            self._held[node.name] = "valar"
            pulumi.log.warn(
                f"ainur: {node.name}: its k3s certificates end at {end}, within {rollout.CERTIFICATE_TRIGGER_DAYS} days, but "
                f"{', '.join(valar)} (valar) is not renewed in this run, and a maia's kube-proxy and k3s-controller "
                "certificates are copies of a valar's, fetched as its k3s starts: this run does not renew them either, and leaves "
                "its k3s step as it is (a k3s upgrade of it included); they "
                "are renewed after the valar's, at the first `pulumi up` it answers",
                resource=self,
            )
            return kept
        if answers(str(node.ip)):
            return due
        self._held[node.name] = f"silent {node.role}"
        others = "the other valar are renewed, the maiar after it" if node.role == "valar" else "the other Pis are renewed"
        pulumi.log.warn(
            f"ainur: {node.name}: its k3s certificates end at {end}, within {rollout.CERTIFICATE_TRIGGER_DAYS} days, but it did not "
            f"answer on {node.ip}:{SSH_PORT} within {ANSWER_SECONDS:g} s, so this run does not renew them, and leaves its k3s step as it is "
            f"(a k3s upgrade of it included) ({others}); "
            "bring it back and run `pulumi up` again, or remove it for good (docs/day2.md#a-dead-pi-removed-for-good)",
            resource=self,
        )
        return kept

    def _record_end(self, node: Node) -> None:
        """The earliest end of a Pi's k3s certificates, as its k3s step said it after it ran (the last deployment's when
        it printed none), in the output's `certificates`."""
        was = rollout.recorded_certificates(self._previous, node.name).get("end")
        stdout = self.pis[node.name].k3s.stdout
        # Dates, never secret, though the step's stdout is one (its connection carries the SSH key): left secret, the
        # outputs would print them as "[secret]", which the next run's checks cannot read.
        self.state["certificates"][node.name]["end"] = pulumi.Output.unsecret(stdout.apply(lambda out: rollout.certificates_end(out) or was))
        # The Pi's clock its step found behind (plans.k3s.CLOCK_LINE), or none: the next run's trigger and warning.
        self.state["certificates"][node.name]["clock"] = pulumi.Output.unsecret(stdout.apply(rollout.certificates_clock))
