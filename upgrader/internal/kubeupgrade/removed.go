package kubeupgrade

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// removedIn is what each Kubernetes minor removed that a component's flags can still name, as
// `talosctl upgrade-k8s` checks it before it changes anything (upgrade.NewChecks: go-kubernetes
// v0.2.36, the version Talos v1.13.0 pins, kubernetes/upgrade/checks.go:229-336, the paths from
// 1.30->1.31 to 1.35->1.36: the Kubernetes versions Talos v1.12 and v1.13 run). Feature gates count
// for the API server, the controller-manager and the scheduler (checks.go:394), and, beyond talosctl,
// which checks only the kubelet's flags (checks.go:413), for the kubelet too: in its --feature-gates
// and in machine.kubelet.extraConfig.featureGates (featureGatesOf), which Talos merges into its
// KubeletConfiguration. Each component registers every Kubernetes gate, and a kubelet given one it does
// not know refuses to start (Kubernetes v1.34.1 cmd/kubelet/app/server.go:203, SetFromMap:
// component-base v0.34.1 featuregate/feature_gate.go:324-329, "unrecognized feature gate"): the gates
// 1.35 removed, SizeMemoryBackedVolumes and UserNamespacesHostNetworkSupport, are the kubelet's own.
var removedIn = map[int]removed{
	31: {
		featureGates: []string{
			"APIPriorityAndFairness", "CSINodeExpandSecret", "ConsistentHTTPGetHandlers",
			"DefaultHostNetworkHostPortsInPodTemplates", "ServiceNodePortStaticSubrange", "SkipReadOnlyValidationGCE",
		},
		flags: map[string][]string{
			"kubelet":                 {"keep-terminated-pod-volumes", "iptables-masquerade-bit", "iptables-drop-bit"},
			"kube-controller-manager": {"volume-host-cidr-denylist", "volume-host-allow-local-loopback", "horizontal-pod-autoscaler-upscale-delay", "horizontal-pod-autoscaler-downscale-delay"},
		},
	},
	32: {
		featureGates: []string{
			"AllowServiceLBStatusOnNonLB", "CloudDualStackNodeIPs", "DRAControlPlaneController", "HPAContainerMetrics", "KMSv2",
			"KMSv2KDF", "LegacyServiceAccountTokenCleanUp", "MinDomainsInPodTopologySpread", "NewVolumeManagerReconstruction",
			"NodeOutOfServiceVolumeDetach", "ServerSideApply", "ServerSideFieldValidation", "StableLoadBalancerNodeSet",
			"ValidatingAdmissionPolicy", "ZeroLimitedNominalConcurrencyShares",
		},
	},
	33: {
		featureGates: []string{
			"AppArmor", "AppArmorFields", "CPUManager", "DisableCloudProviders", "DisableKubeletCloudCredentialProviders",
			"JobPodFailurePolicy", "KubeProxyDrainingTerminatingNodes", "PDBUnhealthyPodEvictionPolicy",
			"PersistentVolumeLastPhaseTransitionTime", "VolumeCapacityPriority",
		},
		flags: map[string][]string{"kube-apiserver": {"cloud-config"}},
	},
	34: {
		featureGates: []string{"DevicePluginCDIDevices", "LegacySidecarContainers", "PodDisruptionConditions"},
		flags:        map[string][]string{"kubelet": {"cloud-config"}},
	},
	35: {
		featureGates: []string{"SizeMemoryBackedVolumes", "UserNamespacesHostNetworkSupport"},
		flags:        map[string][]string{"kubelet": {"pod-infra-container-image"}},
	},
	36: {
		featureGates: []string{"CSIMigrationPortworx", "HonorPVReclaimPolicy", "InTreePluginPortworxUnregister", "WatchFromStorageWithoutResourceVersion"},
	},
}

// Admission plugins removed, by minor: checks.go's last is SecurityContextDeny, in 1.30 (line 225);
// none from 1.31 to 1.36.
var removedAdmissionPlugins = map[int][]string{30: {"SecurityContextDeny"}}

type removed struct {
	featureGates []string
	flags        map[string][]string // by component
}

// finding is one thing a component's flags name that the target removed.
type finding struct {
	what, value string // "flag", "feature gate" or "admission plugin"; its name
	minor       int    // the minor that removed it
}

func (f finding) String() string {
	if f.what == "flag" {
		return fmt.Sprintf("--%s (removed in 1.%d)", f.value, f.minor)
	}

	return fmt.Sprintf("%s %s (removed in 1.%d)", f.what, f.value, f.minor)
}

// removedBy is what a component's extra args name that Kubernetes removed after minor `from` up to
// and including `to` (a component at `to` already is past it).
func removedBy(component string, args map[string][]string, from, to int) []finding {
	var out []finding

	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	for minor := from + 1; minor <= to; minor++ {
		r := removedIn[minor]

		for _, flag := range r.flags[component] {
			if _, ok := args[flag]; ok {
				out = append(out, finding{"flag", flag, minor})
			}
		}

		for _, gate := range listed(args["feature-gates"], true) {
			if slices.Contains(r.featureGates, gate) {
				out = append(out, finding{"feature gate", gate, minor})
			}
		}

		if component == "kube-apiserver" {
			for _, plugin := range listed(args["enable-admission-plugins"], false) {
				if slices.Contains(removedAdmissionPlugins[minor], plugin) {
					out = append(out, finding{"admission plugin", plugin, minor})
				}
			}
		}
	}

	return out
}

// listed splits a comma-separated flag's values (feature gates: NAME=BOOL, the name kept).
func listed(values []string, gates bool) []string {
	var out []string

	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if gates {
				item, _, _ = strings.Cut(item, "=")
			}

			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}

	return out
}

// gatesRemovedBy are the feature gates of a map (machine.kubelet.extraConfig.featureGates) Kubernetes
// removed after minor `from` up to and including `to`.
func gatesRemovedBy(gates []string, from, to int) []finding {
	var out []finding

	sorted := slices.Clone(gates)
	sort.Strings(sorted)

	for minor := from + 1; minor <= to; minor++ {
		for _, gate := range sorted {
			if slices.Contains(removedIn[minor].featureGates, gate) {
				out = append(out, finding{"feature gate", gate, minor})
			}
		}
	}

	return out
}

// featureGatesOf are the gates a kubelet's extraConfig sets (its featureGates map, the
// KubeletConfiguration field Talos merges it into).
func featureGatesOf(extraConfig map[string]any) []string {
	gates, _ := extraConfig["featureGates"].(map[string]any) //nolint:errcheck

	out := make([]string, 0, len(gates))
	for gate := range gates {
		out = append(out, gate)
	}

	return out
}
