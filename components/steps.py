"""A bring-up or day-2 step (`plans.bringup.Step`) as a resource: a local command the engine orders like any other.

A step runs the upgrader from the project folder on `pulumi up` (never at preview), with its secrets
on stdin (a Pulumi secret, so the state keeps them encrypted). Its bound is the upgrader's own
`--timeout`, with the engine's a little over it. `update` is the same command as `create` (unless the
step names another: Arda's bootstrap never starts a new etcd on an update), so a change of what the
step is about re-runs it and `pulumi preview` shows an update with the old and new values: `about` (a version, an installer image, a patch digest) goes into the step's environment as
`ILUVATAR_*` variables, which pulumi-command diffs as an update (its `triggers` would replace).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_command as command

from plans.bringup import Step


def secret_stdin(values: Mapping[str, pulumi.Input[Any]]) -> pulumi.Output[str]:
    """One JSON object on stdin, as the upgrader reads it, kept secret end to end."""
    keys = sorted(values)
    joined = pulumi.Output.all(*(values[k] for k in keys)).apply(lambda parts: json.dumps(dict(zip(keys, parts, strict=True)), sort_keys=True))
    return pulumi.Output.secret(joined)


def reconnect(connection: command.remote.ConnectionArgs, **changes: Any) -> command.remote.ConnectionArgs:
    """`connection` with every field it has, but `changes` (its Python names: `host_key`, `dial_error_limit`, ...): a
    step that dials the same machine differently, without dropping a field another caller set."""
    return command.remote.ConnectionArgs(**{**vars(connection), **changes})


def run(
    name: str,
    step: Step,
    provider: command.Provider,
    parent: pulumi.Resource,
    stdin: pulumi.Input[str] | None = None,
    after: Sequence[pulumi.Resource] = (),
    about: Mapping[str, pulumi.Input[str]] | None = None,
    aliases: Sequence[str] = (),
    delete: Step | None = None,
    triggers: Sequence[pulumi.Input[str]] = (),
    ignore_changes: Sequence[str] = (),
) -> command.local.Command:
    """The step as a `command.local.Command`, created after `after` (`aliases`: the names it had before;
    `delete`: what runs, with the same stdin, when the step leaves the program; `triggers`: values whose change runs
    it again, as pulumi-command's `triggers` do; `ignore_changes`: inputs whose change does not)."""
    return command.local.Command(
        name,
        create=step.command,
        update=step.update_command,
        delete=delete.command if delete is not None else None,
        stdin=stdin,
        environment={f"ILUVATAR_{k}": v for k, v in sorted(about.items())} if about else None,
        triggers=list(triggers) or None,
        opts=pulumi.ResourceOptions(
            parent=parent,
            provider=provider,
            depends_on=list(after),
            custom_timeouts=pulumi.CustomTimeouts(create=step.engine_timeout, update=step.engine_timeout),
            aliases=[pulumi.Alias(name=a) for a in aliases] or None,
            ignore_changes=list(ignore_changes) or None,
        ),
    )


class ClusterAccess:
    """What a step needs to reach one cluster, and what the cluster's own objects are deleted with.

    `cluster`: its name; `kubeconfig`: its admin kubeconfig (secret); `commands`: the local command
    provider; `anchor`: the resource whose deletion means the cluster itself goes (Arda's bootstrap,
    the Ainur's join token), so `pulumi destroy` resets the machines and leaves the objects in the
    cluster to go with it (`deleted_with`), instead of deleting each one first, which hangs on
    namespaces whose custom resources' operators are being deleted at the same time.
    """

    def __init__(self, cluster: str, kubeconfig: pulumi.Output[str], commands: command.Provider, anchor: pulumi.Resource, identifier: str) -> None:
        self.cluster = cluster
        # What its Kubernetes providers give as clusterIdentifier (components.kube.cluster_provider).
        self.identifier = identifier
        self.kubeconfig = kubeconfig
        self.commands = commands
        self.anchor = anchor

    def gate(
        self, name: str, step: Step, parent: pulumi.Resource, after: Sequence[pulumi.Resource] = (), **stdin: pulumi.Input[Any]
    ) -> command.local.Command:
        """A Kubernetes gate on this cluster: the step reads the kubeconfig (and `stdin`'s other keys) on stdin."""
        return run(name, step, self.commands, parent, stdin=secret_stdin({"kubeconfig": self.kubeconfig, **stdin}), after=after)

    def in_cluster(self, args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        """A transformation for a component whose Kubernetes objects are all in this cluster: each is deleted with it."""
        if (
            not args.type_.startswith("kubernetes:")
            or args.type_.startswith("pulumi:providers:")
            or not isinstance(args.resource, pulumi.CustomResource)
        ):
            return None
        return pulumi.ResourceTransformationResult(
            args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(deleted_with=self.anchor))
        )

    def with_cluster(self, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """`opts` for one object of this cluster created outside such a component."""
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(deleted_with=self.anchor))
