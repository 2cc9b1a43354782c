package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// The Node a machine's kubelet registers, and the labels and taints Talos then applies to it.
//
// A kubelet that starts registers its Node (Kubernetes v1.35.1 pkg/kubelet/kubelet_node_status.go:52-82,
// registerWithAPIServer: it waits 100 ms, then tries again with a doubling back-off up to 7 s until the
// API takes it) as initialNode builds it (lines 301-365): the labels kubernetes.io/hostname,
// kubernetes.io/os and kubernetes.io/arch and their beta.kubernetes.io twins (304-312), the taints it is
// told to register with (322-336), the controller-managed attach-detach annotation (338-346: Talos leaves
// enableControllerAttachDetach at its default, true), and the status its setters fill: the addresses
// (pkg/kubelet/nodestatus/setters.go:183-188: InternalIP, the --node-ip Talos passes, then Hostname) and
// nodeInfo (bootID: 241-254; kubeletVersion and osImage: 342-361). A Node of that name already there is
// taken as it is (tryRegisterWithAPIServer, kubelet_node_status.go:89-141: AlreadyExists, or Forbidden,
// then a Get). The kubelet would then patch its default labels and the attach-detach annotation onto it
// (lines 128-129); the stand-in does not, so a Node a test made (kwok_node) keeps the labels it was made with.
//
// Talos tells the kubelet its name (--hostname-override, the Nodename: internal/app/machined/pkg/
// controllers/k8s/kubelet_spec.go:130-135 at v1.13.0) and its node IP (163-176), and has a control plane's
// kubelet register with the node-role.kubernetes.io/control-plane:NoSchedule taint unless the cluster allows
// scheduling on control planes (kubelet_spec.go:327-342). The stand-in's Nodename is the node's name, as its
// kubelet's mirror pods name it (kubelet.go).
//
// Once the Node exists, Talos's NodeApplyController (controllers/k8s/node_apply.go at v1.13.0) gives it the
// labels and taints of the machine config: machine.nodeLabels, and node-role.kubernetes.io/control-plane=""
// on a control plane (node_label_spec.go:78-86); machine.nodeTaints ("value:effect" or "effect"), and on a
// control plane the NoSchedule taint unless cluster.allowSchedulingOnControlPlanes (node_taint_spec.go:72-91).
// It reads the Node, sets what it owns or finds unset, removes what it owned and the config no longer names,
// records what it owns in the talos.dev/owned-labels and talos.dev/owned-taints annotations (node_apply.go:
// 301-354, applyNodeKV 356-392, ApplyTaints 413-464) and updates the Node, trying again on a conflict or a
// refusal (244-262). A control plane signs in as admin (169-186, NewTemporaryClientControlPlane); a worker with
// its kubelet's credentials, so the API server's NodeRestriction refuses it what a node may not change of its
// own Node (a node-role label, a taint), as it refuses a real worker's Talos.

// Registration's back-off (registerWithAPIServer: 100 ms, doubling, at most 7 s).
const (
	registerFirst = 100 * time.Millisecond
	registerMost  = 7 * time.Second
)

// nodeTaint is one of Talos's NodeTaintSpecs (or a kubelet's registration taint).
type nodeTaint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// nodeApply is what Talos applies to the Node: its NodeLabelSpecs and NodeTaintSpecs.
type nodeApply struct {
	labels map[string]string
	taints []nodeTaint
}

// registration is what a starting kubelet registers (read from the boot's config under the cluster's lock).
type registration struct {
	// arch: the kubelet's runtime.GOARCH (initialNode, line 308), the machine's (NodeSpec.Arch, as Version
	// reports it: machine.go).
	name, ip, arch, version, kubeletVersion, bootID string
	taints                                          []nodeTaint
}

// nodeShape reads what the kubelet registers and what Talos applies, from the active config (called with the
// cluster's lock held).
func (n *Node) nodeShape(kubeletVersion string) (registration, nodeApply) {
	reg := registration{name: n.name, ip: n.ip, arch: cmp.Or(n.spec.Arch, "amd64"), version: n.version, kubeletVersion: kubeletVersion, bootID: n.bootID}
	apply := nodeApply{labels: map[string]string{}}
	controlPlane := n.active.Machine().Type().IsControlPlane()
	schedulable := n.active.Cluster() != nil && n.active.Cluster().ScheduleOnControlPlanes()

	maps.Copy(apply.labels, n.active.Machine().NodeLabels())

	if controlPlane {
		apply.labels[constants.LabelNodeRoleControlPlane] = ""
	}

	if controlPlane && !schedulable {
		cp := nodeTaint{Key: constants.LabelNodeRoleControlPlane, Effect: "NoSchedule"}
		reg.taints = append(reg.taints, cp)
		apply.taints = append(apply.taints, cp)
	}

	// NodeTaints is a map: its keys in order, so that the same config is the same spec.
	taints := n.active.Machine().NodeTaints()
	for _, key := range slices.Sorted(maps.Keys(taints)) {
		value, effect, found := strings.Cut(taints[key], ":")
		if !found {
			value, effect = "", value
		}

		apply.taints = append(apply.taints, nodeTaint{Key: key, Value: value, Effect: effect})
	}

	return reg, apply
}

// register is one tryRegisterWithAPIServer: true once the Node is there.
func (k *kubeAPI) register(r registration) bool {
	labels := map[string]any{
		"kubernetes.io/hostname": r.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": r.arch,
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": r.arch,
	}
	spec := map[string]any{}

	if len(r.taints) > 0 {
		spec["taints"] = r.taints
	}

	node := map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":        r.name,
			"labels":      labels,
			"annotations": map[string]any{"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		},
		"spec": spec,
		"status": map[string]any{
			"addresses": []any{map[string]any{"type": "InternalIP", "address": r.ip}, map[string]any{"type": "Hostname", "address": r.name}},
			"nodeInfo": map[string]any{
				"kubeletVersion": r.kubeletVersion, "bootID": r.bootID, "osImage": "Talos (" + r.version + ")",
				"operatingSystem": "linux", "architecture": r.arch,
			},
		},
	}

	code, err := k.do(http.MethodPost, "/api/v1/nodes", "application/json", node, nil)
	if err == nil {
		log.Printf("%s: kubelet: registered its Node", r.name)

		return true
	}

	if code != http.StatusConflict && code != http.StatusForbidden {
		log.Printf("%s: kubelet: registering: %s", r.name, err)

		return false
	}

	if _, err := k.do(http.MethodGet, "/api/v1/nodes/"+r.name, "", nil, nil); err != nil {
		log.Printf("%s: kubelet: registering, the Node there: %s", r.name, err)

		return false
	}

	return true
}

// applyNode is one NodeApplyController.syncOnce for labels and taints: nil once the Node carries them.
func (k *kubeAPI) applyNode(name string, want nodeApply) error {
	var node map[string]any

	if _, err := k.do(http.MethodGet, "/api/v1/nodes/"+name, "", nil, &node); err != nil {
		return err
	}

	before, err := json.Marshal(node)
	if err != nil {
		return err
	}

	meta := node["metadata"].(map[string]any)
	labels := stringMap(meta["labels"])
	annotations := stringMap(meta["annotations"])

	ownedLabels, err := owned(annotations, constants.AnnotationOwnedLabels)
	if err != nil {
		return err
	}

	ownedTaints, err := owned(annotations, constants.AnnotationOwnedTaints)
	if err != nil {
		return err
	}

	// applyNodeKV (node_apply.go:356-392).
	for key, value := range want.labels {
		current, exists := labels[key]

		switch {
		case !exists, current == value:
			labels[key] = value
			ownedLabels[key] = true
		case ownedLabels[key]:
			labels[key] = value
		}
	}

	for key := range ownedLabels {
		if _, wanted := want.labels[key]; !wanted {
			delete(labels, key)
			delete(ownedLabels, key)
		}
	}

	// ApplyTaints (node_apply.go:413-464).
	spec, _ := node["spec"].(map[string]any) //nolint:errcheck
	if spec == nil {
		spec = map[string]any{}
		node["spec"] = spec
	}

	var taints []map[string]any

	if raw, ok := spec["taints"].([]any); ok {
		for _, t := range raw {
			taints = append(taints, t.(map[string]any))
		}
	}

	for _, t := range want.taints {
		i := slices.IndexFunc(taints, func(m map[string]any) bool { return m["key"] == t.Key })

		switch {
		case i < 0:
			taints = append(taints, taintMap(t))
			ownedTaints[t.Key] = true
		case ownedTaints[t.Key]:
			taints[i]["value"], taints[i]["effect"] = t.Value, t.Effect
		case str(taints[i]["value"]) == t.Value && taints[i]["effect"] == t.Effect:
			ownedTaints[t.Key] = true
		}
	}

	taints = slices.DeleteFunc(taints, func(m map[string]any) bool {
		key := str(m["key"])
		if !ownedTaints[key] || slices.ContainsFunc(want.taints, func(t nodeTaint) bool { return t.Key == key }) {
			return false
		}

		delete(ownedTaints, key)

		return true
	})

	for _, t := range taints {
		if t["value"] == "" {
			delete(t, "value")
		}
	}

	if len(taints) > 0 {
		spec["taints"] = taints
	} else {
		delete(spec, "taints")
	}

	for annotation, keys := range map[string]map[string]bool{constants.AnnotationOwnedLabels: ownedLabels, constants.AnnotationOwnedTaints: ownedTaints} {
		if len(keys) == 0 {
			delete(annotations, annotation)

			continue
		}

		list, err := json.Marshal(slices.Sorted(maps.Keys(keys)))
		if err != nil {
			return err
		}

		annotations[annotation] = string(list)
	}

	meta["labels"], meta["annotations"] = labels, annotations

	after, err := json.Marshal(node)
	if err != nil {
		return err
	}

	// Talos updates the Node every time; an update that changes nothing is left out here (the API server
	// would write nothing either).
	if string(after) == string(before) {
		return nil
	}

	_, err = k.do(http.MethodPut, "/api/v1/nodes/"+name, "application/json", node, nil)

	return err
}

func owned(annotations map[string]any, key string) (map[string]bool, error) {
	keys := map[string]bool{}

	raw, _ := annotations[key].(string) //nolint:errcheck
	if raw == "" {
		return keys, nil
	}

	var list []string
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", key, err)
	}

	for _, k := range list {
		keys[k] = true
	}

	return keys, nil
}

func stringMap(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}

	return map[string]any{}
}

func str(v any) string {
	s, _ := v.(string) //nolint:errcheck

	return s
}

func taintMap(t nodeTaint) map[string]any {
	m := map[string]any{"key": t.Key, "effect": t.Effect}
	if t.Value != "" {
		m["value"] = t.Value
	}

	return m
}

// sameApply: the spec Talos applied last is the one it has now.
func sameApply(a, b *nodeApply) bool {
	return a != nil && b != nil && reflect.DeepEqual(*a, *b)
}
