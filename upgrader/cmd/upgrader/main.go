// Command upgrader runs every Talos step the Talos provider cannot do safely, one bounded command
// per `pulumi up` resource: an idempotent bootstrap, the bring-up health gate, the generic
// Kubernetes gates, the per-node apply that rolls config changes and Talos upgrades one node at a
// time behind etcd, drain and health checks, and the etcd and reset chores around them.
//
// Interface (upgrader/README.md has it whole): secrets come only on stdin as one JSON object;
// progress goes to stderr as `upgrader: <node>: <what>`; exit 0 is success, 1 a failed check
// (last line `upgrader: FAILED: <node>: <check>: <detail>; look with: <command>`), 2 bad arguments.
//
// This file is the wiring only: the command table, the signal that ends every wait, and the exit
// code each outcome maps to. Each concern is a package under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/iluvatar/upgrader/internal/apply"
	"github.com/iluvatar/upgrader/internal/health"
	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/reset"
	"github.com/iluvatar/upgrader/internal/talos"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{
	"bootstrap":            {"bootstrap etcd on a control plane, once (already bootstrapped is success)", talos.Bootstrap},
	"health":               {"the bring-up gate: etcd, control plane static pods, the API through the VIP, Nodes Ready", health.Run},
	"wait-kube":            {"a Kubernetes gate: the API, Nodes Ready, manifests admitted, a storage class usable", kube.WaitKube},
	"apply":                {"hand a node its config and roll what it changes (reboot, Talos upgrade), leaving the node healthy", apply.Run},
	"probe":                {"classify nodes as maintenance, running or unreachable (never fails)", talos.Probe},
	"reset":                {"reset a node to maintenance mode (auto: graceful, last for etcd's last member, a dead machine removed from the cluster)", reset.Run},
	"remove-member":        {"remove a gone node's etcd member through the remaining control planes", talos.RemoveMember},
	"etcd-snapshot":        {"save an etcd snapshot from a control plane to a file", talos.EtcdSnapshot},
	"kubernetes-preflight": {"check a Kubernetes upgrade: version skew and APIs removed in the target still requested", kube.Preflight},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: upgrader COMMAND [flags] (secrets as one JSON object on stdin); commands:")

	for _, name := range []string{"bootstrap", "health", "wait-kube", "apply", "probe", "reset", "remove-member", "etcd-snapshot", "kubernetes-preflight"} {
		fmt.Fprintf(os.Stderr, "  %-21s %s\n", name, commands[name].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	if len(argv) == 0 || argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help" {
		usage()

		return exitUsage
	}

	cmd, ok := commands[argv[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "upgrader: unknown command %q\n", argv[0])
		usage()

		return exitUsage
	}

	// SIGTERM/SIGINT (pulumi cancelled) ends every wait at once, as a failure.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	err := cmd.run(ctx, argv[1:])

	var usageErr *input.UsageError

	var failure *report.Failure

	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usageErr):
		fmt.Fprintf(os.Stderr, "upgrader: %s: %s\n", argv[0], usageErr.Msg)

		return exitUsage
	case errors.As(err, &failure):
		fmt.Fprintln(os.Stderr, failure.Line())

		return exitFailed
	default:
		fmt.Fprintln(os.Stderr, (&report.Failure{Node: "-", Check: argv[0], Detail: err.Error(), Look: "upgrader " + argv[0] + " --help"}).Line())

		return exitFailed
	}
}
