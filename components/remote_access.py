"""Remote access: the homelab from a phone or a laptop anywhere, over a tailnet, with no port of the LAN open.

`RemoteAccess` (`iluvatar:remoteAccess:RemoteAccess`, with `iluvatar:remoteAccess`) creates, from plans.remote_access:

- **tailscale**: on the tailnet, the operator's own narrow OAuth client (the stack's, which can rewrite the policy,
  stays in Pulumi's config); on Arda, the operator's namespace, that client's Secret, the operator (its Helm chart at
  v1.102.3) and a `Connector` (two subnet routers advertising envoy-internal and the VIPs); on the tailnet, through
  pulumi-tailscale, its policy (groups, rules, the routes' auto-approval) and a split-DNS entry per internal name.
  The policy goes first: the routers' routes are approved by it when they appear.
- **headscale**: on the Ainur, Headscale (its config, policy, state claim, pod and LoadBalancer at headscale.ip),
  the enrolment of the subnet router (a step on the first valar that asks Headscale's CLI for the router's key,
  kept secret) and the router itself (containerboot from the tailscale image).

pulumi_tailscale is imported as it is: its package is 36 modules, 0.02 to 0.07 s to import (three runs at load 10, beside
pulumi_random's 0.02 to 0.04 s), not pulumi_cloudflare's 780 modules and 1.2 s (components.cloudflare registers those
without the SDK).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tailscale as tailscale

from components import kube, steps
from components.edge import custom_resource
from components.steps import ClusterAccess
from plans import bringup, k3s, references, storage
from plans import drill as drill_plan
from plans import remote_access as plan
from stacks.model import StackConfig


@dataclass(frozen=True)
class RemoteAccessArgs:
    """The stack; Arda's access, provider and what its objects wait for (the operator runs there); the OAuth client's
    secret (flavour tailscale); the Ainur's access, provider, the first valar's SSH connection and what Headscale waits
    for (flavour headscale: its state's storage class)."""

    stack: StackConfig
    arda: ClusterAccess
    arda_provider: k8s.Provider
    arda_after: Sequence[pulumi.Resource] = ()
    oauth_client_secret: pulumi.Output[str] | None = None
    ainur: ClusterAccess | None = None
    ainur_provider: k8s.Provider | None = None
    ainur_connection: command.remote.ConnectionArgs | None = None
    ainur_after: Sequence[pulumi.Resource] = ()
    # The last deployment's output `remoteAccess` (its routerEnrolment); empty on the first one.
    previous: Mapping[str, Any] = field(default_factory=dict)
    # The backup target's S3 key pair (iluvatar:backup with an S3 target), for Headscale's state's repository.
    backup_s3: pulumi.Output[tuple[str, str]] | None = None
    # The restore drills' namespace on Arda (components.data), where Headscale's state is drilled; None: no drills there.
    drill_namespace: pulumi.Resource | None = None


class RemoteAccess(pulumi.ComponentResource):
    """The subnet router, the split DNS and the tailnet's policy, on Tailscale or a self-hosted Headscale."""

    summary: dict[str, Any]

    def __init__(self, name: str, args: RemoteAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:remoteAccess:RemoteAccess", name, None, opts)
        stack = args.stack
        remote = plan.settings(stack)
        # What `pulumi stack output remoteAccess` says (no secret in it): where to sign in, the routes, the names.
        self.summary = plan.sign_in(stack)
        if remote.flavour == "tailscale":
            self._tailscale(name, args)
        else:
            self.summary["routerEnrolment"] = self._headscale(name, args)
        self.register_outputs({"summary": self.summary})

    def _tailscale(self, name: str, args: RemoteAccessArgs) -> None:
        stack = args.stack
        remote = plan.settings(stack)
        assert remote.tailscale is not None
        assert args.oauth_client_secret is not None
        # The tailnet's side first: its policy approves the routes the routers advertise.
        provider = tailscale.Provider(
            f"{name}-tailscale",
            oauth_client_id=remote.tailscale.oauth_client_id,
            oauth_client_secret=args.oauth_client_secret,
            tailnet=remote.tailscale.tailnet,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_tailnet = pulumi.ResourceOptions(parent=self, provider=provider)
        policy = tailscale.Acl(f"{name}-policy", acl=plan.policy_text(stack), overwrite_existing_content=True, opts=on_tailnet)
        for domain, nameservers in plan.split_dns(stack).items():
            tailscale.DnsSplitNameservers(f"{name}-split-dns-{domain}", domain=domain, nameservers=nameservers, opts=on_tailnet)

        in_arda = args.arda.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.arda_provider, depends_on=list(args.arda_after)))
        namespace = kube.create(f"{name}-arda", plan.operator_namespace(), in_arda)
        in_namespace = pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[namespace]))
        # The operator's own OAuth client, made here with only what the operator calls (module doc of plans.remote_access,
        # OPERATOR_SCOPES): the stack's client, which may rewrite the whole policy, never leaves Pulumi's config.
        client = tailscale.OauthClient(
            f"{name}-operator-client",
            description=plan.OPERATOR_CLIENT_DESCRIPTION,
            scopes=list(plan.OPERATOR_SCOPES),
            tags=[plan.OPERATOR_TAG],
            opts=pulumi.ResourceOptions.merge(on_tailnet, pulumi.ResourceOptions(depends_on=[policy])),
        )
        operator_credentials: pulumi.Output[dict[str, str]] = pulumi.Output.secret(
            pulumi.Output.all(client.id, client.key).apply(lambda idk: {"client_id": str(idk[0]), "client_secret": str(idk[1] or "")})
        )
        secret_manifest = plan.oauth_secret("", "")
        oauth = k8s.core.v1.Secret(
            f"{name}-oauth",
            metadata=secret_manifest["metadata"],
            type="Opaque",
            string_data=operator_credentials,
            opts=in_namespace,
        )
        release = k8s.helm.v3.Release(
            f"{name}-operator",
            name=plan.OPERATOR_CHART,
            chart=plan.OPERATOR_CHART,
            version=plan.TAILSCALE_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=plan.OPERATOR_REPOSITORY),
            namespace=plan.OPERATOR_NAMESPACE,
            # The operator reads its client once, at start (tsclient.go:39-53): a new client (a replaced OauthClient) is a new pod.
            values=client.id.apply(lambda client_id: plan.operator_values(stack, client_id)),
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[oauth])),
        )
        custom_resource(
            f"{name}-connector", plan.connector(stack), pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[release, policy]))
        )

    def _headscale(self, name: str, args: RemoteAccessArgs) -> pulumi.Output[int]:
        """Headscale, its users, the router and the router's step; returns the router's enrolment count (exported)."""
        stack = args.stack
        assert args.ainur is not None
        assert args.ainur_provider is not None
        assert args.ainur_connection is not None
        in_ainur = args.ainur.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.ainur_provider, depends_on=list(args.ainur_after)))
        manifests = plan.headscale_manifests(stack)
        # Headscale's state (its keys, the devices, their addresses) is irreplaceable: a new claim re-keys every device.
        claim = next(m for m in manifests if m["kind"] == "PersistentVolumeClaim")
        namespace = kube.create(f"{name}-ainur", manifests[0], in_ainur)
        # The claim binds only once its class exists and its driver runs: Longhorn is an Argo CD Application of the storage
        # layer, whose creation says neither, and pulumi-kubernetes gives up on a claim long before Longhorn has pulled
        # its images; so the claim waits for the class as the Git mirror's does (plans.bringup.storage_class_gate).
        state_after: list[pulumi.Resource] = [namespace]
        state_class = storage.git_mirror_class(stack)
        if state_class != "local-path":  # k3s serves local-path from its start
            state_after.append(args.ainur.gate(f"{name}-gate-storage", bringup.storage_class_gate(state_class), self, after=args.ainur_after))
        state = kube.create(
            f"{name}-ainur", claim, pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=state_after, protect=True))
        )
        rest = [m for m in manifests[1:] if m is not claim]
        before: list[pulumi.Resource] = [namespace]
        if plan.state_backup_enabled(stack):
            # What the stamp's account may change (plans.remote_access.state_backup_admission), in force before the
            # CronJob that holds its token exists.
            before += kube.create_all(f"{name}-ainur", plan.state_backup_admission(stack), in_ainur).values()
            before.append(
                self._state_backup_secret(name, args, pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=[namespace])))
            )
            if drill_plan.headscale_drilled(stack) and args.drill_namespace is not None:
                self._state_drill(name, args)
        made = kube.create_all(
            f"{name}-ainur",
            rest,
            pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=before)),
            existing={references.identity(claim): state},
        )
        headscale = made[kube.resource_name(f"{name}-ainur", next(m for m in rest if m["kind"] == "Deployment"))]
        # The router's enrolment key, from Headscale's own CLI in its pod (over its unix socket): never logged, kept secret.
        cli = f"sudo {k3s.KUBECTL} -n {plan.NAMESPACE} exec deploy/{plan.HEADSCALE} -c {plan.HEADSCALE} -- headscale"
        # The users the policy names: a step of its own, run again (pulumi-command runs `create` on an update) when the
        # members change, which mints no router key.
        command.remote.Command(
            f"{name}-users",
            connection=args.ainur_connection,
            create=plan.users_script(stack, cli),
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(parent=self, provider=args.ainur.commands, depends_on=[headscale]),
        )
        # The router rolls after Headscale: a new route must reach Headscale's new policy, since the old one refuses it
        # and v0.27.1 never re-approves it on its own (approval only on a change of routes, hscontrol/state/state.go:1656;
        # NewState loads the policy without approving, state.go:100-150). Pulumi does not await it (skipAwait, in the
        # plan): the step below is its wait, since only that step can give it a key.
        router = kube.create_all(
            f"{name}-ainur",
            plan.router_manifests(stack),
            pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=[namespace, headscale])),
        )
        deployment = router[kube.resource_name(f"{name}-ainur", next(m for m in plan.router_manifests(stack) if m["kind"] == "Deployment"))]
        # The router's enrolment and its check (plans.remote_access.router_script): a key only for a router with no node,
        # made on the Pi and written there into its Secret (never in Pulumi's state or a log), then the router's rollout
        # and its routes approved as advertised. A run that fails or is killed is retried by the next `pulumi up`; any
        # change of the router's pod template runs it again (its digest is in the script), as does a probe that finds
        # the router without its node or not available.
        kubectl = f"sudo {k3s.KUBECTL}"
        enrolment = self._enrolment(name, args)
        command.remote.Command(
            f"{name}-enroll",
            connection=args.ainur_connection,
            create=enrolment.apply(lambda count: plan.router_script(stack, cli, kubectl, enrolment=count)),
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.ainur.commands,
                depends_on=[headscale, deployment],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
            ),
        )
        return enrolment

    def _state_backup_secret(self, name: str, args: RemoteAccessArgs, opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        """The restic Secret of Headscale's state (plans.remote_access.state_backup_secret): its repository's password a
        protected random password (a new one would lock every snapshot away), the target's keys; secret end to end."""
        stack = args.stack
        rnd = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
        password = random.RandomPassword(
            f"{name}-state-backup-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self, provider=rnd, protect=True)
        ).result
        self._state_password = password
        s3: pulumi.Output[tuple[str, str] | None] = args.backup_s3 if args.backup_s3 is not None else pulumi.Output.from_input(None)
        values = pulumi.Output.all(password, s3).apply(lambda v: plan.state_backup_secret(stack, str(v[0]), v[1])["stringData"])
        shape = plan.state_backup_secret(stack, "", None)
        return k8s.core.v1.Secret(
            kube.resource_name(f"{name}-ainur", shape),
            metadata=shape["metadata"],
            type="Opaque",
            string_data=pulumi.Output.secret(values),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
        )

    def _state_drill(self, name: str, args: RemoteAccessArgs) -> None:
        """Headscale's state restore drill on Arda (plans.drill.headscale_cronjob), in the drills' namespace, with its own
        copy of the state repository's Secret (the same password and keys), secret end to end."""
        stack = args.stack
        assert args.drill_namespace is not None
        in_arda = args.arda.with_cluster(
            pulumi.ResourceOptions(parent=self, provider=args.arda_provider, depends_on=[*args.arda_after, args.drill_namespace])
        )
        s3: pulumi.Output[tuple[str, str] | None] = args.backup_s3 if args.backup_s3 is not None else pulumi.Output.from_input(None)
        values = pulumi.Output.all(self._state_password, s3).apply(lambda v: drill_plan.headscale_secret(stack, str(v[0]), v[1])["stringData"])
        shape = drill_plan.headscale_secret(stack, "", None)
        secret = k8s.core.v1.Secret(
            kube.resource_name(f"{name}-arda", shape),
            metadata=shape["metadata"],
            type="Opaque",
            string_data=pulumi.Output.secret(values),
            opts=pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
        )
        # On an NFS target, the export's volume and claim (plans.drill.headscale_target), before the CronJob that mounts them.
        target = [kube.create(f"{name}-arda", m, in_arda) for m in drill_plan.headscale_target(stack)]
        kube.create(
            f"{name}-arda",
            drill_plan.headscale_cronjob(stack),
            pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[secret, *target])),
        )

    def _enrolment(self, name: str, args: RemoteAccessArgs) -> pulumi.Output[int]:
        """The router's enrolment count (plans.remote_access.router_enrolment): on a deployed stack, the probe asks the
        Ainur, at `pulumi preview` as at `pulumi up`, whether the router's state Secret still names its node and its
        Deployment is available, so the preview shows the router's step running again when not (and says why). A first deployment asks nothing."""
        assert args.ainur is not None
        # A number read back from the engine's outputs is a float (a protobuf Struct's number).
        last = args.previous.get("routerEnrolment")
        if not isinstance(last, int | float) or isinstance(last, bool) or last != int(last) or last < 1:
            # A first deployment, or one made before the count existed: the step is created (or changed) anyway.
            return pulumi.Output.from_input(1)
        previous = int(last)
        printed = command.local.run_output(
            command=plan.router_probe_command(args.stack),
            stdin=steps.secret_stdin({"kubeconfig": args.ainur.kubeconfig}),
            logging=command.local.Logging.STDERR,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.ainur.commands),
        ).stdout
        # What it prints holds no secret (present, absent or unreachable), though its stdin does.
        count = pulumi.Output.unsecret(printed).apply(lambda text: plan.router_enrolment(previous, text))

        def said(now: int) -> int:
            if now != previous:
                pulumi.log.info(
                    f"the subnet router has no node (no {plan.DEVICE_ID_KEY} in Secret {plan.NAMESPACE}/{plan.router_state_secret(args.stack)}) "
                    f"or is not available (Deployment {plan.NAMESPACE}/{plan.ROUTER}): its step ({name}-enroll) runs again, mints it a key "
                    f"if Headscale has no node for it and waits for it (enrolment {previous} to {now})",
                    resource=self,
                )
            return now

        return count.apply(said)
