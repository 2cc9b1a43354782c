"""plans.references: what a manifest names, read from every place a pod or binding names it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from plans import references


def _deployment(pod: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"}, "spec": {"template": {"spec": pod}}}


def test_a_pod_names_its_account_volumes_env_and_pull_secrets() -> None:
    pod = {
        "serviceAccountName": "web",
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": [
            {"name": "a", "configMap": {"name": "settings"}},
            {"name": "b", "secret": {"secretName": "tls"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {
                "name": "d",
                "projected": {"sources": [{"configMap": {"name": "ca"}}, {"secret": {"name": "token"}}, {"serviceAccountToken": {"path": "t"}}]},
            },
            {"name": "e", "configMap": {"name": "maybe", "optional": True}},
            {"name": "f", "emptyDir": {}},
        ],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
        "containers": [
            {
                "name": "c",
                "envFrom": [{"configMapRef": {"name": "env"}}],
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "password", "key": "p"}}}, {"name": "X", "value": "1"}],
            }
        ],
    }
    assert references.references(_deployment(pod)) == [
        ("ConfigMap", "apps", "ca"),
        ("ConfigMap", "apps", "env"),
        ("ConfigMap", "apps", "settings"),
        ("Namespace", "", "apps"),
        ("PersistentVolumeClaim", "apps", "data"),
        ("Secret", "apps", "init-env"),
        ("Secret", "apps", "password"),
        ("Secret", "apps", "registry"),
        ("Secret", "apps", "tls"),
        ("Secret", "apps", "token"),
        ("ServiceAccount", "apps", "web"),
    ]


def test_the_default_account_and_optional_sources_are_not_waited_for() -> None:
    assert references.references(_deployment({"serviceAccountName": "default", "containers": []})) == [("Namespace", "", "apps")]


def test_a_cronjobs_pod_is_two_templates_deep() -> None:
    cron = {
        "kind": "CronJob",
        "metadata": {"name": "b", "namespace": "ops"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": "backup"}}}}},
    }
    assert references.references(cron) == [("Namespace", "", "ops"), ("ServiceAccount", "ops", "backup")]


def test_bindings_name_their_role_and_accounts_and_cluster_objects_no_namespace() -> None:
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vip"},
        "roleRef": {"kind": "ClusterRole", "name": "vip"},
        "subjects": [{"kind": "ServiceAccount", "name": "vip", "namespace": "kube-system"}, {"kind": "User", "name": "alice"}],
    }
    assert references.identity(binding) == ("ClusterRoleBinding", "", "vip")
    assert references.references(binding) == [("ClusterRole", "", "vip"), ("ServiceAccount", "kube-system", "vip")]
    role_binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "r", "namespace": "n"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "s"}],
    }
    assert references.references(role_binding) == [("Namespace", "", "n"), ("Role", "n", "r"), ("ServiceAccount", "n", "s")]


def test_an_object_without_a_namespace_lives_in_default() -> None:
    assert references.identity({"kind": "ConfigMap", "metadata": {"name": "x"}}) == ("ConfigMap", "default", "x")


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=6))
def test_references_are_sorted_and_unique(names: list[str]) -> None:
    pod = {"volumes": [{"name": f"v{i}", "configMap": {"name": n}} for i, n in enumerate(names)], "containers": []}
    found = references.references(_deployment(pod))
    assert found == sorted(set(found))
    assert {r[2] for r in found if r[0] == "ConfigMap"} == set(names)
