"""Netboot on the Ainur: dnsmasq (DHCP/PXE, TFTP, DNS), the HTTP server for iPXE scripts, boot assets
and workers' Talos configs, the cache of them on every Pi, kube-vip for the service address, and the
Argo CD seed's namespace. (The GitOps repo mirror is `components.git_mirror`: its volume waits for
Longhorn, which arrives much later.)

All objects go through the Ainur Kubernetes provider passed in `providers`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components import kube
from plans import k3s, references, storage, timeouts
from plans import netboot as plan
from plans.netboot import dhcp_probe, pi_pods, pis, vip_roll
from stacks import netboot_mode
from stacks.model import AddressRange, StackConfig

SERVING = (("daemonset", "netboot-cache"), ("deployment", "netboot"), ("service", "netboot"))


@dataclass(frozen=True)
class NetbootArgs:
    """What the Ainur serve: per-MAC Talos configs (secret), each board's kernel and initramfs URLs,
    and extra (name, address) records for the internal DNS zone (the edge layer's app hosts).

    `schematics`: each board's Image Factory schematic as sent to the factory. The configs and asset URLs name the
    schematic ID the program computes (known at preview), which carries no dependency on the resource that sends it;
    Image Factory serves a schematic's images only once it was sent, so the served objects wait for it (a cache
    fetching a kernel the factory does not know yet gets a 404, which `curl --retry` does not retry).
    """

    stack: StackConfig
    configs: dict[str, pulumi.Output[str]]
    boot_assets: dict[str, pulumi.Output[tuple[str, str]]]
    dns_records: Sequence[tuple[str, IPv4Address]] = ()
    schematics: Sequence[pulumi.Resource] = ()
    # The first version's volume of the netbooted roots, where the last deployment had it (pi_pods.keeps_legacy_claim).
    legacy_roots: bool = True
    # A valar over SSH (the one holding the Ainur's API VIP: a first valar that is down must not stop every run that
    # rolls the netboot pods), where the step before netboot-cache's roll runs (plans.netboot.cache.clearance_script),
    # through the Ainur's command provider (`commands`, the one its other steps on the Pis use).
    valar: command.remote.ConnectionArgs | None = None
    commands: command.Provider | None = None
    # The last deployment's output `dnsmasqConf`: the mode and service address its dnsmasq runs with until the netboot
    # objects change, which the DHCP probe must count as the Ainur's own (stacks.netboot_mode).
    previous_dnsmasq_conf: str | None = None
    # Every Pi's last step and netboot-ready gate (components.ainur): kube-vip's roll runs after them, so no Pi's k3s
    # restarts while the holder of the service address has its kube-vip replaced (plans.netboot.vip_roll).
    after_pis: Sequence[pulumi.Resource] = ()


def _settled(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """`value`, or "" where the resource it comes from failed (its future raises): any failure is "not finished"."""

    async def settle() -> str:
        try:
            return await value.future() or ""
        except Exception:
            return ""

    return pulumi.Output.from_input(settle())


class Netboot(pulumi.ComponentResource):
    """Netboot: the objects in the Ainur's `netboot` namespace that let Arda machines boot unattended."""

    objects: dict[str, pulumi.CustomResource]
    # What must be serving before a machine can boot from the network: every Pi's cache of the boot
    # assets (the DaemonSet), dnsmasq and nginx (the Deployment, ready when both answer) and the
    # service address kube-vip announces (the Service, ready once it has its address). pulumi-kubernetes
    # awaits all three, so a resource that depends on them starts only when the LAN can netboot.
    serving: list[pulumi.CustomResource]
    pi_serving: list[pulumi.CustomResource]
    dnsmasq_conf: str
    scripts: dict[str, str]

    def __init__(self, name: str, args: NetbootArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:ainur:Netboot", name, None, opts)
        stack = args.stack
        # All dnsmasq serves, its records' files written in (stacks.day2 reads a deployment's), as `dnsmasqConf`.
        self.dnsmasq_conf = plan.served_conf(stack, args.dns_records)
        self.scripts = plan.scripts(stack)
        deployed = netboot_mode.deployed_mode(args.previous_dnsmasq_conf)
        manifests = plan.manifests(stack, list(args.configs), args.dns_records, args.legacy_roots, deployed)
        namespace = manifests[0]
        self.objects = {}
        self.kube_vip_rolled: pulumi.Output[str] | None = None
        ns = kube.create(name, namespace, pulumi.ResourceOptions(parent=self))
        self.objects[kube.resource_name(name, namespace)] = ns
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns, *args.schematics])
        fetch = pulumi.Output.all(*args.boot_assets.values()).apply(
            lambda urls: plan.fetch_assets_script(dict(zip(args.boot_assets, urls, strict=True)))
        )
        configs = k8s.core.v1.Secret(
            f"{name}-secret-talos-configs",
            metadata={"name": "talos-configs", "namespace": plan.NAMESPACE},
            type="Opaque",
            # No netboot worker (only control planes, or none): an empty Secret, never an Output of a list.
            string_data=pulumi.Output.all(**{f"{mac}.yaml": config for mac, config in args.configs.items()}) if args.configs else {},
            opts=in_ns,
        )
        self.objects[f"{name}-secret-talos-configs"] = configs

        def with_fetch_script(static: dict[str, str]) -> pulumi.Output[dict[str, str]]:
            return fetch.apply(lambda script: {**static, "fetch-assets.sh": script})

        rest = []
        for manifest in manifests[1:]:
            if manifest["kind"] == "ConfigMap" and manifest["metadata"]["name"] == "netboot":
                manifest = {**manifest, "data": with_fetch_script(dict(manifest["data"]))}
            if manifest["kind"] == "DaemonSet" and manifest["metadata"]["name"] == "netboot-cache":
                # Refill every Pi's cache when the boot assets change (a Talos upgrade, a new board).
                template = manifest["spec"]["template"]
                digest = fetch.apply(lambda script: hashlib.sha256(script.encode()).hexdigest()[:16])
                # Beside the plan's own annotations (the Pis' pi-digest), which a bare replacement dropped.
                annotations = {**template["metadata"].get("annotations", {}), "iluvatar/assets-digest": digest}
                template = {**template, "metadata": {**template["metadata"], "annotations": annotations}}
                manifest = {**manifest, "spec": {**manifest["spec"], "template": template}}
            rest.append(manifest)
        # Each workload after the account, ConfigMaps and Secrets it names (plans.references).
        existing = {references.identity(namespace): ns, ("Secret", plan.NAMESPACE, "talos-configs"): configs}
        # The NFS server of the maiar's roots after netboot-cache: pulumi-kubernetes awaits the DaemonSet
        # until every Pi's pod is ready, past its init steps, so a new image is built on every Pi that boots from its
        # card before the server is replaced to serve a root of it.
        # The roots' volume and server wait for its storage too (Longhorn's StorageClass comes with the
        # storage layer, long after this): `serve_pis` makes them, once the program has it.
        self._pis = [
            m
            for m in rest
            if (m["kind"], m["metadata"]["name"]) in (("Deployment", "pi-nfs"), ("StorageClass", pi_pods.ROOTS_CLASS))
            or (
                m["kind"] == "PersistentVolumeClaim"
                and (m["metadata"]["name"] == pi_pods.LEGACY_CLAIM or m["metadata"]["name"].startswith("pi-root-"))
            )
        ]
        rest = [m for m in rest if m not in self._pis]
        made_opts = pulumi.ResourceOptions(parent=self, depends_on=list(args.schematics))
        # netboot-cache, when maiar netboot, is ready on a Pi only past the Pi image's build: its own
        # bound, sized for a build on each card Pi, and a message saying what the wait is for (plans.netboot.pi_pods).
        cache = [m for m in rest if (m["kind"], m["metadata"]["name"]) == ("DaemonSet", "netboot-cache")]
        pod = [m for m in rest if (m["kind"], m["metadata"]["name"]) == ("Deployment", "netboot")]
        others = [m for m in rest if m not in cache and m not in pod]
        probe_where: tuple[list[str], str, str] | None = None
        router_where: tuple[str, str | None] = ("", None)
        probe_live: tuple[str, str, list[str], str | None] = ("", "", [], None)
        if args.valar is not None and args.commands is not None:
            # Before anything the LAN's DHCP reads is made or changed (the config dnsmasq reads, its pod, the cache it
            # serves from): a real DHCPDISCOVER from the valar holding the Ainur's API address, refused in dhcp mode
            # beside another DHCP server, and in proxy mode beside any server but the router's or without the router's,
            # save on a move from dhcp, where it is refused while the router's answers: its DHCP stays off until the
            # Ainur stop lending (plans.netboot.dhcp_probe). Run again whenever dnsmasq starts
            # anew: its pod's template carries the digest of everything dnsmasq reads only at its start
            # (plans.netboot.objects.config_digest: the mode, the range, the service address). Records it re-reads while
            # running (an app, a machine on disk) are no new DHCP server, and ask nothing of the LAN. The running
            # dnsmasq answers from the last deployment's service address until then, so answers from it are the Ainur's.
            assert stack.ainur is not None
            mode, svc = stack.ainur.netboot.mode, str(plan.service_ip(stack))
            old_svc, old_mode = netboot_mode.deployed_service_ip(args.previous_dnsmasq_conf), netboot_mode.deployed_mode(args.previous_dnsmasq_conf)
            ours = [svc, *([old_svc] if old_svc is not None and old_svc != svc else [])]
            before = old_mode if old_mode is not None and old_mode != mode else None
            # The router by its address, never "whatever else answers" (plans.netboot.dhcp_probe).
            router = str(stack.ainur.netboot.router_address or stack.network.gateway)
            # The pool the stack says the router lent, checked against the router's offers where the probe hears them.
            lent = stack.ainur.netboot.router_pool
            pool = None if mode != "dhcp" or lent is None else lent if isinstance(lent, str) else f"{lent.start}-{lent.end}"
            template_digest = hashlib.sha256(json.dumps([m["spec"]["template"] for m in pod], sort_keys=True).encode()).hexdigest()[:16]
            probe_where = (ours, mode, template_digest)
            router_where = (router, before)
            # Whether this `up` moves the LAN between modes is read by the step itself from the netboot Deployment that
            # runs (its template's annotations, dhcp_probe.deployed), never from the last outputs alone: the engine writes
            # those even for an `up` that failed before the Deployment changed, and the retry would see no move while the
            # old pod still ran the old mode. The outputs' mode serves only a Deployment made before the annotations, and,
            # in the triggers, runs the step again on the `up` after one that failed after it passed.
            # (The stack's own where the outputs have none, a first bring-up's: the next `up` then reads the same.)
            deployed_mode, deployed_ip = old_mode or mode, old_svc or svc
            triggers = [template_digest, f"mode:{mode}", f"deployed:{deployed_mode}"]
            probe_live = (deployed_mode, deployed_ip, triggers, pool)
            probe = command.remote.Command(
                f"{name}-dhcp-probe",
                connection=args.valar,
                create=dhcp_probe.probe_script(
                    mode, ours, str(stack.network.lan), router, None, pool, kubectl=k3s.KUBECTL, deployed_mode=deployed_mode, deployed_ip=deployed_ip
                ),
                triggers=triggers,
                # After the namespace, which waits for the Ainur's API: the step dials the API address, which exists
                # only once k3s and kube-vip run (on a first `up` it would spend its SSH retries before they do).
                opts=pulumi.ResourceOptions(parent=self, provider=args.commands, depends_on=[ns]),
            )
            self.objects[f"{name}-dhcp-probe"] = probe
            made_opts = pulumi.ResourceOptions.merge(made_opts, pulumi.ResourceOptions(depends_on=[probe]))
        after_clearance = made_opts
        if args.valar is not None and args.commands is not None and (cache or pod):
            # A Pi that is down would hold the cache's roll on every Pi (its old pod Terminating for ever), or keep the
            # netboot pod's replacement from starting; what it holds them with leaves first (plans.netboot.cache). Run
            # again whenever either template changes, which is when either rolls.
            templates = pulumi.Output.from_input([m["spec"]["template"] for m in (*cache, *pod)]).apply(
                lambda t: hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]
            )
            clearance = command.remote.Command(
                f"{name}-clearance",
                connection=args.valar,
                create=plan.clearance_script(),
                triggers=[templates],
                opts=pulumi.ResourceOptions(parent=self, provider=args.commands, depends_on=[ns]),
            )
            self.objects[f"{name}-clearance"] = clearance
            after_clearance = pulumi.ResourceOptions.merge(made_opts, pulumi.ResourceOptions(depends_on=[clearance]))
        self.objects.update(kube.create_all(name, others, made_opts, existing))
        made = {**existing, **{references.identity(m): self.objects[kube.resource_name(name, m)] for m in others}}
        pod_opts = after_clearance
        if probe_where is not None and args.valar is not None and args.commands is not None and pod and probe_where[1] == "dhcp":
            # A move from proxy to dhcp, or the first dhcp bring-up beside a router that lent (routerPool not `none`): the
            # router lends until the Ainur are about to, so the household is without a lender only for the pod's restart,
            # not for the whole `up` (the API gate, Pi rolls, the probe, the clearance): right before the Deployment
            # changes, after everything else it waits on, this step says "turn the router's DHCP off now" and waits,
            # bounded, until no server but the Ainur's answers (dhcp_probe.wait_off). Whether it is such a move it reads
            # from the netboot Deployment that runs (dhcp_probe.moving); one already in dhcp mode passes at once. A failure
            # or a killed `up` leaves the old proxy pod and the router's DHCP as they were, or off; the next `up` asks again.
            ours = probe_where[0]
            live_mode, live_ip, triggers, lent_pool = probe_live
            # After every netboot object but the LoadBalancer Service of the pod itself: pulumi-kubernetes v4.32.0 awaits
            # that Service until it has an ingress (provider/pkg/await/service.go:299-308, :411-417), which kube-vip
            # v0.9.2 writes for a Local Service only from a node with a ready endpoint of it, i.e. the netboot pod
            # (pkg/manager/watch_services.go:198-231, watch_endpoints.go:214-217): waiting on it here, with the Deployment
            # waiting on this step, would hold the first dhcp bring-up until the Service's 10 min ran out, on every retry.
            own_balancers = {r for r, m in ((references.identity(m), m) for m in others) if plan.balances(m, pod[0])}
            router_off = command.remote.Command(
                f"{name}-router-off",
                connection=args.valar,
                # kube-vip on every Ready Pi first (OnDelete: not awaited by Pulumi), so the household's time without
                # a lender does not include its first image pull (plans.netboot.vip_roll.running_script).
                create=vip_roll.running_script()
                + dhcp_probe.off_script(
                    ours,
                    str(stack.network.lan),
                    router_where[0],
                    kubectl=k3s.KUBECTL,
                    pool=lent_pool,
                    deployed_mode=live_mode,
                    deployed_ip=live_ip,
                ),
                triggers=triggers,
                opts=pulumi.ResourceOptions.merge(
                    after_clearance,
                    pulumi.ResourceOptions(
                        provider=args.commands,
                        depends_on=[made[r] for r in made if r not in own_balancers],
                        custom_timeouts=pulumi.CustomTimeouts(
                            create=timeouts.engine_timeout(f"{dhcp_probe.ROUTER_WAIT_MINUTES + -(-vip_roll.RUNNING_SECONDS // 60)}m")
                        ),
                    ),
                ),
            )
            self.objects[f"{name}-router-off"] = router_off
            pod_opts = pulumi.ResourceOptions.merge(after_clearance, pulumi.ResourceOptions(depends_on=[router_off]))
        self.objects.update(kube.create_all(name, pod, pod_opts, made))
        made = {**made, **{references.identity(m): self.objects[kube.resource_name(name, m)] for m in pod}}
        if probe_where is not None and args.valar is not None and args.commands is not None and probe_where[1] == "proxy" and pod:
            # In proxy mode the router lends: once the netboot pod runs (pulumi-kubernetes awaits the Deployment ready),
            # the router's DHCP server must answer, and no other server. On a move from dhcp this is where the user turns the router's
            # DHCP on: only now have the Ainur stopped lending, so the two never lend the same pool at once (their
            # authoritative dnsmasq would NAK the router's clients). Bounded (dhcp_probe.ROUTER_WAIT_MINUTES); a failure
            # leaves nothing half-done: the next `up` runs it again. On any other restart of the pod it passes at once.
            # Its word to the user shows while it waits: pulumi-command v1.2.1 logs each line of a command's output as a
            # status of the resource as it comes (provider/pkg/provider/remote/commandOutputs.go:93, util/util.go:32-53).
            ours = probe_where[0]
            lends_pool = stack.ainur.netboot.router_pool if stack.ainur is not None else None
            pool_text = f"{lends_pool.start}-{lends_pool.end}" if isinstance(lends_pool, AddressRange) else None
            self.objects[f"{name}-router-dhcp"] = command.remote.Command(
                f"{name}-router-dhcp",
                connection=args.valar,
                # "Turn it on now" only on a move from dhcp (wording alone: the wait is the same): as the last outputs have
                # it, or as the probe read it from the Deployment that ran and told the user to wait for this word (a retry
                # after an `up` that failed before the Deployment changed has proxy outputs and a dhcp pod). The probe's
                # output is the one of its last run, which shares this step's triggers, so it is this move's. On a move
                # from dhcp, the router's offers are held to the pool the stack says it lends, apart from the ranges the
                # Ainur lent (stacks.netboot_mode): the household keeps those leases, the router knows none.
                create=probe.stdout.apply(
                    lambda out: dhcp_probe.wait_script(
                        ours,
                        str(stack.network.lan),
                        router,
                        before="dhcp" if router_where[1] == "dhcp" or dhcp_probe.told_to_leave_off(out) else router_where[1],
                        pool=pool_text if router_where[1] == "dhcp" or dhcp_probe.told_to_leave_off(out) else None,
                    )
                ),
                triggers=probe_live[2],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.commands,
                    depends_on=[self.objects[kube.resource_name(name, m)] for m in pod],
                    custom_timeouts=pulumi.CustomTimeouts(create=timeouts.engine_timeout(f"{dhcp_probe.ROUTER_WAIT_MINUTES}m")),
                ),
            )
        cache_opts = after_clearance
        if pi_pods.builds_image(stack):
            wait = f"{pi_pods.cache_wait_minutes(stack)}m"
            cache_opts = pulumi.ResourceOptions.merge(
                after_clearance, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create=wait, update=wait))
            )
        self.objects.update(kube.create_all(name, cache, cache_opts, made))
        if pi_pods.builds_image(stack):
            pulumi.log.info(pi_pods.cache_wait_message(stack), resource=self.objects[f"{name}-daemonset-netboot-cache"])
        if args.valar is not None and args.commands is not None:
            # kube-vip-services is OnDelete: this step replaces its pods after each change of its template, the Pi holding
            # the service address last, so the household's DNS is away only for one kube-vip's restart there
            # (plans.netboot.vip_roll). Its trigger is the template itself: an `up` stopped after the DaemonSet changed
            # and before this step ended runs it again, and it reads from the cluster what is left to replace. After
            # netboot-cache too, which pulls kube-vip's image on every Pi (plans.netboot.pods.cache_pod); after every
            # Pi's k3s step and netboot-ready gate (args.after_pis) and the netboot pod's replacement, so neither a
            # restart of the API or of the holder's kubelet nor a move of the netboot pod falls inside the holder's gap.
            [vips] = [m for m in others if (m["kind"], m["metadata"]["name"]) == ("DaemonSet", vip_roll.DAEMONSET)]
            vips_digest = vip_roll.template_digest(stack)
            # The engine's bound on the stack's Pis; the script stops itself within its own bound on the cluster's
            # Nodes, which is this one unless the cluster has Nodes the stack no longer names.
            bound = vip_roll.step_seconds(len(stack.ainur_nodes))
            self.objects[f"{name}-kube-vip-roll"] = roll_step = command.remote.Command(
                f"{name}-kube-vip-roll",
                connection=args.valar,
                create=vip_roll.roll_script(str(plan.service_ip(stack)), total_seconds=bound),
                triggers=[vips_digest],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.commands,
                    depends_on=[
                        self.objects[kube.resource_name(name, vips)],
                        self.objects[f"{name}-daemonset-netboot-cache"],
                        *(self.objects[kube.resource_name(name, m)] for m in pod),
                        *args.after_pis,
                    ],
                    custom_timeouts=pulumi.CustomTimeouts(create=timeouts.engine_timeout(f"{-(-bound // 60)}m")),
                ),
            )
            # What the day-2 plan compares the next template with (stacks.pulumi_source.recorded_ainur): the template's
            # digest once the step has finished with it (its id resolves only for a step created, or kept, without
            # error), "" when it failed, so the next preview still names the roll. Caught here: an error of the step
            # must not keep the program's other outputs from being written.
            self.kube_vip_rolled = _settled(roll_step.id.apply(lambda _: vips_digest))
        self._made = {**existing, **{references.identity(m): self.objects[kube.resource_name(name, m)] for m in rest}}
        self._name, self._schematics, self._stack = name, list(args.schematics), stack
        self.serving = [self.objects[f"{name}-{kind}-{obj}"] for kind, obj in SERVING]
        # What must be serving before a netbooting maia can boot: the same, and the NFS server of its root (serve_pis).
        self.pi_serving = list(self.serving)
        self.register_outputs({"dnsmasqConf": self.dnsmasq_conf, "scripts": self.scripts})

    def serve_pis(self, storage: Sequence[pulumi.Resource], valar: command.remote.ConnectionArgs, commands: command.Provider) -> None:
        """The netbooting maiar's roots' volume and NFS server, after `storage` (the Application that installs the
        volume's StorageClass, Longhorn, when it runs on the Ainur) and after netboot-cache: pulumi-kubernetes awaits
        the DaemonSet until every card Pi's pod is past its init steps, so a new image is built on each before the
        server is replaced to serve a root of it. Nothing without a netbooting maia. `valar`: the first valar, where
        each new root volume's placement wait runs with k3s's kubectl, through `commands`."""
        if not self._pis:
            return
        name = self._name
        after = pulumi.ResourceOptions(parent=self, depends_on=[*self._schematics, self.objects[f"{name}-daemonset-netboot-cache"], *storage])
        made = dict(self._made)
        for claim in (m for m in self._pis if m["kind"] in ("StorageClass", "PersistentVolumeClaim")):
            if claim["metadata"]["name"] == pi_pods.LEGACY_CLAIM:
                # The first version's volume of every root (pi_pods.legacy_claim): never resized, replaced nor deleted.
                keep = pulumi.ResourceOptions(retain_on_delete=True, ignore_changes=["spec"])
            elif claim["kind"] == "PersistentVolumeClaim":
                # A Pi's roots are irreplaceable (its k3s node password, its host keys, what it wrote): a removal of the
                # Pi from the inventory stops at this claim until the user unprotects it (docs/layers/ainur.md), and
                # even then `up` only forgets it: the claim and its volume stay in the cluster, on
                # either class (k3s's local-path deletes its folder with the claim).
                keep = pulumi.ResourceOptions(protect=True, retain_on_delete=True)
            else:
                keep = pulumi.ResourceOptions()
            # Each claim after the roots' StorageClass, which comes first in the plan's list.
            classes = [made[r] for r in made if r[:1] == ("StorageClass",) and r[2] == pi_pods.ROOTS_CLASS] if claim["kind"] != "StorageClass" else []
            made[references.identity(claim)] = self.objects[kube.resource_name(name, claim)] = kube.create(
                name, claim, pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=classes)))
            )
        volumes = self._root_volumes(after)
        # The server is replaced after every root's Volume is patched to the program's count and selector, and after
        # each new one's copies are placed: the wait runs once, when its claim is new, never on the first
        # version's volume, and passes at once on a volume the running pi-nfs serves already (pi_pods).
        placed = self._placed(after, volumes, valar, commands)
        served = pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[*volumes, *placed]))
        self.objects.update(kube.create_all(name, [m for m in self._pis if m["kind"] == "Deployment"], served, made))
        self.pi_serving = [*self.serving, self.objects[f"{name}-deployment-pi-nfs"]]

    def _placed(
        self, after: pulumi.ResourceOptions, volumes: Sequence[pulumi.Resource], valar: command.remote.ConnectionArgs, commands: command.Provider
    ) -> list[pulumi.Resource]:
        """Per netbooting Pi's root volume on Longhorn, a wait on the first valar until Longhorn has placed its copies
        (pi_pods.placed_wait_script), after the Volume's patch. Created once: its script is ignored afterwards, so no
        later `up` runs it again (a failover with a dead card Pi may leave Scheduled False for good)."""
        stack, name = self._stack, self._name
        if not volumes:
            return []
        pulumi.log.info(pi_pods.placed_wait_message(stack), resource=self)
        engine = timeouts.engine_timeout(pi_pods.PLACED_TIMEOUT)
        return [
            command.remote.Command(
                f"{name}-placed-{pi_pods.root_claim(node)}",
                connection=valar,
                create=pi_pods.placed_wait_script(stack, node),
                opts=pulumi.ResourceOptions.merge(
                    after,
                    pulumi.ResourceOptions(
                        provider=commands,
                        depends_on=list(volumes),
                        ignore_changes=["create"],
                        custom_timeouts=pulumi.CustomTimeouts(create=engine),
                    ),
                ),
            )
            for node in pis.netboot_pis(stack)
        ]

    def _root_volumes(self, after: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """Each root's Longhorn Volume patched to the program's count of copies and the `pi-root` selector (Longhorn
        reads its class's only when it creates the volume; pi_pods.root_volume_spec), once its claim is
        Bound (pulumi-kubernetes awaits a claim's binding, so its `spec.volumeName`, the Volume's name, is known).
        Forced: longhorn-manager wrote these fields first. Never reverted: deleting the patch leaves the Volume as it is."""
        stack, name = self._stack, self._name
        if pi_pods.roots_class(stack) != pi_pods.ROOTS_CLASS:
            return []
        if warning := pi_pods.single_copy_warning(stack):
            pulumi.log.warn(warning, resource=self)
        patches: list[pulumi.Resource] = []
        for claim in (m for m in self._pis if m["kind"] == "PersistentVolumeClaim"):
            made = self.objects[kube.resource_name(name, claim)]
            assert isinstance(made, k8s.core.v1.PersistentVolumeClaim)
            patches.append(
                k8s.apiextensions.CustomResourcePatch(
                    f"{name}-volume-{claim['metadata']['name']}",
                    api_version="longhorn.io/v1beta2",
                    kind="Volume",
                    metadata={
                        "name": made.spec.apply(lambda spec: spec.volume_name),
                        "namespace": storage.LONGHORN_NAMESPACE,
                        # Not `pulumi.com/waitFor`: pi_pods.root_volume_spec and the note above its callers.
                        "annotations": {"pulumi.com/patchForce": "true"},
                    },
                    spec=pi_pods.root_volume_spec(stack, legacy=claim["metadata"]["name"] == pi_pods.LEGACY_CLAIM),
                    opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[made], retain_on_delete=True)),
                )
            )
        if any(m["metadata"]["name"] == pi_pods.LEGACY_CLAIM for m in self._pis):
            pulumi.log.info(pi_pods.legacy_replicas_note(), resource=patches[-1])
        return patches
