package main

import (
	"fmt"
	"log"
	"net/http"
	"time"
)

// Talos's NodeStatusController, for MachineStatus's nodeReady condition: it watches the machine's own Node
// with the kubelet's kubeconfig (internal/app/machined/pkg/controllers/k8s/node_status.go:139-152 at v1.12.4,
// :147-170 at v1.13.0) and keeps its Ready condition as NodeStatus.NodeReady (node_status.go:194-209 at
// v1.12.4, :242 at v1.13.0), which MachineStatus's nodeReady check reads: "node %q status is not available
// yet" while there is no Node, "node %q is not ready" while its Ready condition is not True
// (controllers/runtime/machine_status.go:354-385 at both tags). So a machine is not ready while its Node is
// not, and a Node is not Ready before a CNI runs (the kubelet reports its runtime network not ready).
//
// The stand-in reads the Node from the scenario's Kubernetes API when it is the test's own (cluster.kubernetesCA
// given, as for its kubelets: a node client certificate, which the Node authorizer lets read its own Node);
// a scenario without it has no Node to read, and readyAfterMs stands for the Node's readiness there.

// nodeStatusPoll is how often the stand-in reads the Node (Talos watches it: a change shows at once).
const nodeStatusPoll = 100 * time.Millisecond

// watchNodeStatus starts the node's NodeStatusController for this boot (called with the cluster's lock held).
func (n *Node) watchNodeStatus() {
	n.nodeWatched, n.nodeReady = false, false

	if n.c.sc.Cluster.KubernetesCA == nil || n.maintenance || n.active == nil {
		return
	}

	api, err := n.c.kubeClient(n.name)
	if err != nil {
		log.Printf("%s: node status: %s", n.name, err)

		return
	}

	n.nodeWatched, n.nodeReason = true, fmt.Sprintf("node %q status is not available yet", n.name)
	gen := n.gen

	go func() {
		for {
			ready, reason := api.nodeReady(n.name)

			n.c.mu.Lock()
			if n.gen != gen || !n.up {
				n.c.mu.Unlock()

				return
			}

			if ready != n.nodeReady || reason != n.nodeReason {
				n.nodeReady, n.nodeReason = ready, reason
				n.writeMachineStatus() //nolint:errcheck
			}
			n.c.mu.Unlock()

			time.Sleep(nodeStatusPoll)
		}
	}()
}

// nodeReady reads the Node's Ready condition as NodeStatusController keeps it, and the reason
// MachineStatus's nodeReady check gives when it is not.
func (k *kubeAPI) nodeReady(name string) (bool, string) {
	var node struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}

	code, err := k.do(http.MethodGet, "/api/v1/nodes/"+name, "", nil, &node)
	if err != nil {
		if code != http.StatusNotFound {
			log.Printf("%s: node status: %s", name, err)
		}

		return false, fmt.Sprintf("node %q status is not available yet", name)
	}

	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			return true, ""
		}
	}

	return false, fmt.Sprintf("node %q is not ready", name)
}
