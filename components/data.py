"""Data safety on the clusters: External Secrets Operator and its store, VolSync and the restic Secrets, etcd backups.

`DataSafety` (`iluvatar:data:DataSafety`) wires `plans.secrets` and `plans.backup` into resources on Arda
(and, for the Ainur's etcd snapshots to S3, one Secret on the Ainur). ESO and its SecretStores come
before Argo CD (`ready`: GitOps waits for them), so no app syncs before the store that feeds it exists.
Every generated value (an app's generated secret, a restic repository's password, the age identity
that decrypts Arda's etcd snapshots) is a protected Pulumi resource: `pulumi destroy` and a refactoring
cannot lose the key to the backups. The age identity is exported, secret, as `backupAgeKey`: keep a copy
outside the homelab (docs/layers/data.md).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.steps import ClusterAccess
from plans import age, bringup, references
from plans import backup as backup_plan
from plans import drill as drill_plan
from plans import kms as kms_plan
from plans import secrets as secrets_plan
from stacks.model import App, StackConfig
from stacks.pulumi_source import StackSecrets


class ChartPlan(Protocol):
    """A plan module that installs one chart (plans.secrets, plans.backup)."""

    CHART: str
    VERSION: str
    REPOSITORY: str
    NAMESPACE: str

    def helm_values(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DataSafetyArgs:
    """The stack, Arda (and the Ainur, for k3s's S3 credentials), the stack's secrets, and the category namespaces (the edge's)."""

    stack: StackConfig
    arda: ClusterAccess
    secrets: StackSecrets
    after: Sequence[pulumi.Resource] = ()
    namespaces: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    ainur: ClusterAccess | None = None
    ainur_provider: k8s.Provider | None = None
    # The KMS key (components.kms), when the Ainur serve one: its age file goes to the backup target, and its drill.
    kms_key: pulumi.Output[str] | None = None


def _secret_data(values: Any) -> Any:
    return pulumi.Output.secret(values)


# What the Outputs below resolve through, made per value so each closure keeps its own app and key.
def _user_value(owner: str, key: str) -> Callable[[Any], str]:
    """A user-supplied secret (iluvatar:appSecrets) by app and key; empty when the user gave none."""
    return lambda values: str((values or {}).get(owner, {}).get(key, ""))


def _keyed(keys: Sequence[str]) -> Callable[[list[Any]], dict[str, Any]]:
    return lambda values: dict(zip(keys, values, strict=True))


def _restic_data(stack: StackConfig, app: App, claim: str) -> Callable[[list[Any]], Any]:
    """A volume's restic Secret's data, from its password and (with an S3 target) the access key pair."""
    return lambda values: backup_plan.restic_secret(stack, app, claim, str(values[0]), values[1])["stringData"]


class DataSafety(pulumi.ComponentResource):
    """ESO, its store and readers; VolSync and each volume's restic Secret; talos-backup; k3s's S3 Secret."""

    ready: list[pulumi.Resource]
    age_identity: pulumi.Output[str] | None
    # The identity's recipient (public): what else is backed up age-encrypted is encrypted to it (the KMS key, plans.kms).
    age_recipient: pulumi.Output[str] | None
    # The drills' namespace on Arda (plans.drill.NAMESPACE), where another component's drill goes (Headscale's state).
    drill_namespace: pulumi.Resource | None

    def __init__(self, name: str, args: DataSafetyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:data:DataSafety", name, None, opts)
        stack = args.stack
        self.ready = []
        self.age_identity = None
        self.age_recipient = None
        # The KMS key's age file as uploaded (components below); its drill fetches the object it names.
        self.kms_key_file: pulumi.Output[str] | None = None
        self.drill_namespace = None
        self._access = args.arda
        self._stack = args.stack
        child = pulumi.ResourceOptions(parent=self)
        rnd = random.Provider(f"{name}-random", opts=child)
        self._random = pulumi.ResourceOptions(parent=self, provider=rnd, protect=True)
        if secrets_plan.enabled(stack):
            self._secrets(name, args)
        if backup_plan.enabled(stack):
            self._backups(name, args)
        self.register_outputs({"ready": [r.urn for r in self.ready]})

    def _password(self, name: str, length: int = 32) -> random.RandomPassword:
        return random.RandomPassword(name, length=length, special=False, opts=self._random)

    def _on_arda(self, after: Sequence[pulumi.Resource], **opts: Any) -> pulumi.ResourceOptions:
        """Options of an object on Arda: deleted with the cluster, as every layer's (components.steps.ClusterAccess)."""
        return self._access.with_cluster(pulumi.ResourceOptions(parent=self, depends_on=list(after), **opts))

    def _release(self, name: str, plan: ChartPlan, after: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        """The plan's chart, released under the chart's own name into the plan's namespace on Arda."""
        return k8s.helm.v3.Release(
            name,
            chart=plan.CHART,
            version=plan.VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=plan.REPOSITORY),
            name=plan.CHART,
            namespace=plan.NAMESPACE,
            values=plan.helm_values(),
            opts=self._on_arda(after),
        )

    def _create(self, name: str, manifest: dict[str, Any], after: Sequence[pulumi.Resource]) -> pulumi.CustomResource:
        return kube.create(name, manifest, self._on_arda(after))

    def _secret(
        self, name: str, shape: dict[str, Any], data: pulumi.Output[Any], after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions | None = None
    ) -> k8s.core.v1.Secret:
        """A Secret whose values stay a Pulumi secret end to end (its data never shows in a preview, a render or the state in clear)."""
        return k8s.core.v1.Secret(
            kube.resource_name(name, shape),
            metadata=shape["metadata"],
            type="Opaque",
            string_data=_secret_data(data),
            opts=opts or self._on_arda(after, additional_secret_outputs=["data", "stringData"]),
        )

    # --- Secrets --------------------------------------------------------------------------------

    def _secrets(self, name: str, args: DataSafetyArgs) -> None:
        stack = args.stack
        prefix = f"{name}-secrets"
        namespaces = {m["metadata"]["name"]: self._create(prefix, m, args.after) for m in secrets_plan.namespaces()}
        release = self._release(f"{prefix}-release", secrets_plan, [namespaces[secrets_plan.NAMESPACE], *args.after])
        categories = secrets_plan.categories(stack)
        # ESO's webhook admits SecretStores: the stores wait until it answers (and its CRDs are served).
        gate = args.arda.gate(
            f"{prefix}-gate",
            bringup.admits_gate("External Secrets Operator", ["SecretStore"]),
            self,
            after=[release],
            manifests=[secrets_plan.secret_store(c) for c in categories],
        )
        generated: dict[tuple[str, str], pulumi.Output[str]] = {}
        for app in secrets_plan.apps_with_secrets(stack):
            for secret in app.secrets:
                if secret.generate is not None:
                    generated[(app.name, secret.name)] = self._password(f"{prefix}-{app.name}-{secret.name.lower()}", secret.generate).result
        user: pulumi.Output[Any] = args.secrets.app_secrets if args.secrets.app_secrets is not None else pulumi.Output.from_input({})
        for app in secrets_plan.apps_with_secrets(stack):
            origins = secrets_plan.sources(stack, app)
            inputs: dict[str, pulumi.Output[str]] = {}
            for key, (owner, kind) in origins.items():
                if kind == "generate":
                    inputs[key] = generated[(owner, key)]
                else:
                    inputs[key] = user.apply(_user_value(owner, key))
            keys = sorted(inputs)
            values = pulumi.Output.all(*(inputs[k] for k in keys)).apply(_keyed(keys))
            self._secret(prefix, secrets_plan.store_secret_shape(app), values, [namespaces[secrets_plan.STORE_NAMESPACE]])
        for category in categories:
            after_ns = [namespaces[secrets_plan.STORE_NAMESPACE], *([args.namespaces[category]] if category in args.namespaces else [])]
            # Each category has objects of the same name (its reader, its store): named after the category.
            named: dict[references.Ref, pulumi.Resource] = {("Namespace", "", secrets_plan.STORE_NAMESPACE): namespaces[secrets_plan.STORE_NAMESPACE]}
            if category in args.namespaces:
                named["Namespace", "", category] = args.namespaces[category]
            # The binding after its role and account (plans.references).
            made = kube.create_all(f"{prefix}-{category}", secrets_plan.reader_objects(stack, category), self._on_arda(after_ns), named)
            readers: list[pulumi.Resource] = list(made.values())
            store = secrets_plan.secret_store(category)
            self.ready.append(
                k8s.apiextensions.CustomResource(
                    kube.resource_name(f"{prefix}-{category}", store),
                    api_version=store["apiVersion"],
                    kind=store["kind"],
                    metadata=store["metadata"],
                    spec=store["spec"],
                    opts=self._on_arda([release, gate, *readers, *after_ns]),
                )
            )
        self.ready += [release, gate]

    # --- Backups --------------------------------------------------------------------------------

    def _backups(self, name: str, args: DataSafetyArgs) -> None:
        stack = args.stack
        prefix = f"{name}-backup"
        target = backup_plan.target(stack)
        s3: pulumi.Output[tuple[str, str]] | None = None
        if target.kind == "s3":
            assert args.secrets.s3_access_key_id is not None
            assert args.secrets.s3_secret_access_key is not None
            s3 = pulumi.Output.all(args.secrets.s3_access_key_id, args.secrets.s3_secret_access_key).apply(lambda v: (str(v[0]), str(v[1])))
        namespaces = {m["metadata"]["name"]: self._create(prefix, m, args.after) for m in backup_plan.namespaces(stack)}
        # Its metrics, served without a token, behind their policy before the chart runs a pod (backup_plan.network_policy).
        guard = self._create(prefix, backup_plan.network_policy(stack), [namespaces[backup_plan.NAMESPACE], *args.after])
        self._release(f"{prefix}-volsync", backup_plan, [namespaces[backup_plan.NAMESPACE], guard, *args.after])
        restic: dict[str, pulumi.Resource] = {}
        for app in backup_plan.apps(stack):
            assert app.backup is not None
            for volume in app.backup.volumes:
                password = self._password(f"{prefix}-{app.name}-{volume.claim}-restic-password").result
                values = pulumi.Output.all(password, s3 if s3 is not None else None).apply(_restic_data(stack, app, volume.claim))
                shape = backup_plan.restic_secret(stack, app, volume.claim, "", None)
                category = [args.namespaces[app.category]] if app.category in args.namespaces else []
                restic[f"{app.namespace}/{volume.claim}"] = self._secret(f"{prefix}-{app.category}", shape, values, category)
        if backup_plan.arda_etcd(stack):
            assert s3 is not None
            credentials = self._talos_backup(prefix, args, namespaces[backup_plan.ETCD_NAMESPACE], s3)
            if args.kms_key is not None and kms_plan.backup_enabled(stack):
                self._kms_key_backup(prefix, args.kms_key, [namespaces[backup_plan.ETCD_NAMESPACE], credentials])
        if drill_plan.enabled(stack):
            self._drill(f"{name}-drill", args, restic, s3)
        if stack.ainur is not None and s3 is not None and args.ainur is not None and args.ainur_provider is not None:
            shape = backup_plan.k3s_s3_secret(stack, "", "")
            values = s3.apply(lambda keys: backup_plan.k3s_s3_secret(stack, keys[0], keys[1])["stringData"])
            on_ainur = pulumi.ResourceOptions(parent=self, provider=args.ainur_provider, additional_secret_outputs=["data", "stringData"])
            self._secret(f"{name}-ainur", shape, values, [], args.ainur.with_cluster(on_ainur))

    def _drill(self, prefix: str, args: DataSafetyArgs, restic: Mapping[str, pulumi.Resource], s3: pulumi.Output[tuple[str, str]] | None) -> None:
        """The restore drills (plans.drill): each volume's beside its restic Secret, each cluster's etcd in its own
        namespace with the S3 keys and (for Arda's) the age identity, which nothing else there reads."""
        stack = args.stack
        # The scratch claims' classes, which delete a drill's copy of a volume with its claim (plans.storage.scratch_class).
        classes = [self._create(f"{prefix}-scratch", c, args.after) for c in drill_plan.scratch_classes(stack)]
        for app, volume in drill_plan.volume_drills(stack):
            after = [
                *classes,
                restic[f"{app.namespace}/{volume.claim}"],
                *([args.namespaces[app.category]] if app.category in args.namespaces else []),
            ]
            self._create(f"{prefix}-{app.category}", drill_plan.volume_cronjob(stack, app, volume), after)
        clusters = drill_plan.etcd_drills(stack)
        kms_drill = args.kms_key is not None and drill_plan.kms_drill_enabled(stack)
        if s3 is None:
            # An NFS target: no etcd or KMS key drill (their backups go to S3 only), but Headscale's state, which its pod
            # writes there too, is drilled in the drills' namespace (components.remote_access).
            if drill_plan.headscale_drilled(stack):
                self.drill_namespace = self._create(prefix, drill_plan.namespace(stack), args.after)
            return
        if not clusters and not kms_drill:
            return
        namespace = self._create(prefix, drill_plan.namespace(stack), args.after)
        self.drill_namespace = namespace
        keys = self._secret(
            prefix, drill_plan.s3_secret_shape(), s3.apply(lambda k: {"AWS_ACCESS_KEY_ID": k[0], "AWS_SECRET_ACCESS_KEY": k[1]}), [namespace]
        )
        made: list[pulumi.Resource] = [namespace, keys]
        if "arda" in clusters or kms_drill:
            assert self.age_identity is not None, "Arda's and the KMS key's drills need talos-backup's age identity (stacks.data.drills)"
            shape = drill_plan.age_secret("")
            made.append(self._secret(prefix, shape, self.age_identity.apply(lambda key: drill_plan.age_secret(key)["stringData"]), [namespace]))
            # Where the drill keeps age between runs (plans.drill.TOOLS_CLAIM), once its class and driver are there
            # (plans.bringup.storage_class_gate: the class may come from an Argo CD Application, later).
            claim = drill_plan.tools_claim(stack)
            before: list[pulumi.Resource] = [namespace]
            if (chosen := claim["spec"].get("storageClassName")) is not None:
                before.append(args.arda.gate(f"{prefix}-gate-storage", bringup.storage_class_gate(chosen), self, after=args.after))
            made.append(self._create(prefix, claim, before))
        for cluster in clusters:
            self._create(prefix, drill_plan.etcd_cronjob(stack, cluster), made)
        if kms_drill:
            assert args.kms_key is not None
            # The canary is the KMS key's seal of a public value: no more secret than the key's age file (unsecret, so
            # the CronJob's spec shows in a preview as every drill's does).
            canary = pulumi.Output.unsecret(args.kms_key.apply(kms_plan.canary))
            # The live key's object on the target, named by its age file (plans.kms.backup_object): ciphertext's hash.
            assert self.kms_key_file is not None, "the KMS key's drill runs only where its backup is uploaded (plans.drill.kms_drill_enabled)"
            where = self.kms_key_file.apply(lambda armored: kms_plan.backup_object(stack, armored))
            cronjob: pulumi.Output[dict[str, Any]] = pulumi.Output.all(canary, where).apply(lambda v: drill_plan.kms_cronjob(stack, v[0], v[1]))
            k8s.batch.v1.CronJob(
                kube.resource_name(prefix, drill_plan.kms_cronjob(stack, "", "")),
                metadata=cronjob.apply(lambda c: c["metadata"]),
                spec=cronjob.apply(lambda c: c["spec"]),
                opts=self._on_arda(made),
            )

    def _kms_key_backup(self, prefix: str, key: pulumi.Output[str], after: Sequence[pulumi.Resource]) -> None:
        """The KMS key's age file (to the backups' recipient: `backupAgeKey` opens it) and the CronJob that uploads it
        beside the etcd snapshots with talos-backup's S3 keys (plans.kms.backup_cronjob)."""
        assert self.age_recipient is not None
        stack = self._stack
        # Ciphertext: unsecret, as the stack output `kmsKeyBackup` of the same file is.
        armored = pulumi.Output.unsecret(pulumi.Output.all(key, self.age_recipient).apply(lambda v: kms_plan.key_backup(v[0], v[1])))
        self.kms_key_file = armored
        shape = kms_plan.backup_configmap("")
        configmap = k8s.core.v1.ConfigMap(
            kube.resource_name(prefix, shape),
            metadata=shape["metadata"],
            data=armored.apply(lambda a: kms_plan.backup_configmap(a)["data"]),
            opts=self._on_arda(after),
        )
        self._create(prefix, kms_plan.backup_cronjob(stack), [*after, configmap])

    def _talos_backup(self, prefix: str, args: DataSafetyArgs, namespace: pulumi.Resource, s3: pulumi.Output[tuple[str, str]]) -> k8s.core.v1.Secret:
        """talos-backup and its identity; returns its S3 Secret (the KMS key's backup uploads with the same keys)."""
        stack = args.stack
        # The age identity: 32 random bytes, protected; talos-backup gets only its recipient (public).
        key = random.RandomBytes(f"{prefix}-age-identity", length=32, opts=self._random)
        scalar = key.base64.apply(base64.b64decode)
        self.age_identity = pulumi.Output.secret(scalar.apply(age.identity))
        recipient: pulumi.Output[str] = pulumi.Output.unsecret(scalar.apply(age.recipient))
        self.age_recipient = recipient
        credentials = self._secret(
            prefix,
            backup_plan.talos_s3_secret(stack, "", ""),
            s3.apply(lambda keys: backup_plan.talos_s3_secret(stack, keys[0], keys[1])["stringData"]),
            [namespace],
        )
        account = backup_plan.talos_service_account()
        # Talos serves the ServiceAccount kind once the control planes' config allows the role: wait for it.
        gate = args.arda.gate(
            f"{prefix}-gate-talos-api-access",
            bringup.admits_gate("Talos API access from Kubernetes", ["ServiceAccount"]),
            self,
            after=[namespace, *args.after],
            manifests=[account],
        )
        sa = k8s.apiextensions.CustomResource(
            kube.resource_name(prefix, account),
            api_version=account["apiVersion"],
            kind=account["kind"],
            metadata=account["metadata"],
            spec=account["spec"],
            opts=self._on_arda([namespace, gate]),
        )
        cronjob: pulumi.Output[dict[str, Any]] = recipient.apply(lambda r: backup_plan.talos_backup_cronjob(stack, r))
        k8s.batch.v1.CronJob(
            kube.resource_name(prefix, backup_plan.talos_backup_cronjob(stack, "")),
            metadata=cronjob.apply(lambda c: c["metadata"]),
            spec=cronjob.apply(lambda c: c["spec"]),
            opts=self._on_arda([namespace, credentials, sa]),
        )
        return credentials
