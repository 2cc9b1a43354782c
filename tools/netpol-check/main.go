// netpol-check: np-guard's netpol-analyzer v1.4.2 computes which workloads and which outside addresses reach
// which ports of which workloads, from a folder of one cluster's Kubernetes objects (Namespaces, workloads,
// Services, NetworkPolicies): the tests pin that matrix (tests/tools/test_netpol_check.py).
//
//	netpol-check DIR   prints {"connections": [...], "peers": [...], "warnings": [...]} on stdout
//
// "connections" is the analyzer's own JSON connection list (connlist's "json" format: src, dst, conn); "peers" every
// workload it read (`namespace/name[Kind]`, as it names them in the list); "warnings"
// every warning it reported (e.g. a cluster with no NetworkPolicy at all), which the caller pins. An error the
// analyzer calls fatal or severe (an object it could not read, a policy it could not evaluate: its results "may not
// be useable", internal/common/netpol_commands_common.go:20-25) fails the run naming it, as does a fatal error of
// the analysis itself. The library is used rather than the analyzer's CLI (`k8snetpolicy list`) so that its
// warnings are collected, not only logged (pkg/netpol/connlist/connlist.go:316, Errors).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/np-guard/netpol-analyzer/pkg/netpol/connlist"
)

type result struct {
	Connections json.RawMessage `json:"connections"`
	Peers       []string        `json:"peers"`
	Warnings    []string        `json:"warnings"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: netpol-check DIR")
		os.Exit(2)
	}
	analyzer := connlist.NewConnlistAnalyzer(connlist.WithOutputFormat("json"), connlist.WithMuteErrsAndWarns())
	conns, peers, err := analyzer.ConnlistFromDirPath(os.Args[1])
	failed := err != nil
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
	warnings := []string{}
	for _, e := range analyzer.Errors() {
		if e.IsFatal() || e.IsSevere() {
			failed = true
			fmt.Fprintf(os.Stderr, "error: %s: %v\n", e.Location(), e.Error())
			continue
		}
		warnings = append(warnings, e.Error().Error())
	}
	if failed {
		os.Exit(1)
	}
	out, err := analyzer.ConnectionsListToString(conns)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(peers))
	for _, p := range peers {
		names = append(names, p.String())
	}
	encoded, err := json.Marshal(result{Connections: json.RawMessage(out), Peers: names, Warnings: warnings})
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(encoded))
}
