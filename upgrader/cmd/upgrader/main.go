// Command upgrader runs every Talos step the Talos provider cannot do safely, one bounded command
// per `pulumi up` resource: an idempotent bootstrap, the bring-up health gate, the generic
// Kubernetes gates, the per-node apply that rolls config changes and Talos upgrades one node at a
// time behind etcd, drain and health checks, and the etcd and reset chores around them.
//
// Interface (upgrader/README.md has it whole): secrets come only on stdin as one JSON object;
// progress goes to stderr as `upgrader: <node>: <what>`; exit 0 is success, 1 a failed check
// (last line `upgrader: FAILED: <node>: <check>: <detail>; look with: <command>`), 2 bad arguments.
//
// This file is the wiring only: the command table, the signals that end every wait, and the exit
// code each outcome maps to. Each concern is a package under internal/.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/iluvatar/upgrader/internal/apply"
	"github.com/iluvatar/upgrader/internal/discovery"
	"github.com/iluvatar/upgrader/internal/health"
	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/kubeupgrade"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/reset"
	"github.com/iluvatar/upgrader/internal/stop"
	"github.com/iluvatar/upgrader/internal/talos"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// A command's parse reads its arguments and stdin and checks their shape, contacting nothing (all
// that check-input runs); what it returns runs the command.
type command struct {
	summary string
	parse   func(args []string, stdin io.Reader) (func(context.Context) error, error)
}

var commands = map[string]command{
	"bootstrap":            {"bootstrap etcd on a control plane, once (already bootstrapped is success)", talos.ParseBootstrap},
	"health":               {"the bring-up gate: etcd, control plane static pods, the API through the VIP, Nodes Ready", health.Parse},
	"wait-kube":            {"a Kubernetes gate: the API, Nodes Ready, manifests admitted, a storage class usable", kube.ParseWaitKube},
	"apply":                {"hand a node its config and roll what it changes (reboot, Talos upgrade), leaving the node healthy", apply.Parse},
	"probe":                {"classify nodes as maintenance, running or unreachable (never fails)", talos.ParseProbe},
	"release-node-ports":   {"take back the NodePorts the proxy Services of Envoy Gateway's gateways still hold", kube.ParseReleaseNodePorts},
	"secret-key":           {"say whether a Secret holds a key: present, absent or unreachable (never fails)", kube.ParseSecretKey},
	"reset":                {"reset a node to maintenance mode (auto: graceful, last for etcd's last member, a dead machine removed from the cluster)", reset.Parse},
	"remove-member":        {"remove a gone node's etcd member through the remaining control planes", talos.ParseRemoveMember},
	"etcd-snapshot":        {"save an etcd snapshot from a control plane to a file", talos.ParseEtcdSnapshot},
	"kubernetes-preflight": {"check a Kubernetes upgrade: version skew and APIs removed in the target still requested", kube.ParsePreflight},
	"kubernetes-upgrade":   {"roll a Kubernetes version component by component: API servers, controller-managers, schedulers, kubelets", kubeupgrade.Parse},
	"discover":             {"read the netboot leases and ask each machine in maintenance mode what it is (only reads; iluvatar discover)", discovery.Parse},
}

var order = []string{"bootstrap", "health", "wait-kube", "release-node-ports", "apply", "probe", "secret-key", "reset", "remove-member", "etcd-snapshot", "kubernetes-preflight", "kubernetes-upgrade"}

const checkInput = "check-input"

func usage() {
	fmt.Fprintln(os.Stderr, "usage: upgrader COMMAND [flags] (secrets as one JSON object on stdin); commands:")

	for _, name := range order {
		fmt.Fprintf(os.Stderr, "  %-21s %s\n", name, commands[name].summary)
	}

	fmt.Fprintf(os.Stderr, "  %-21s %s\n", checkInput, "check a command line and its stdin as the command reads them, contacting nothing: check-input -- COMMAND [flags]; check-input --batch")
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	if len(argv) == 0 || argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help" {
		usage()

		return exitUsage
	}

	if argv[0] == checkInput {
		return check(argv[1:])
	}

	cmd, ok := commands[argv[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "upgrader: unknown command %q\n", argv[0])
		usage()

		return exitUsage
	}

	quietClientGo()

	// SIGTERM (the shell pulumi-command ran it in was killed: Pulumi cancelled the step) or SIGINT ends
	// every wait at once, as a failure; the process then ends within stop.Grace (internal/stop).
	ctx, done := stop.On(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer done()

	start, err := cmd.parse(argv[1:], os.Stdin)
	if err == nil {
		err = start(ctx)
	}

	code, line := outcome(argv[0], err)
	if line != "" {
		fmt.Fprintln(os.Stderr, line)
	}

	return code
}

// quietClientGo drops client-go's own log lines. stderr is the upgrader's interface (`upgrader: <node>: <what>`,
// the last line its outcome), and every error client-go logs it also returns to the caller, which reports it in
// that form. client-go's copies are noise at best and, on a stop, a line in the middle of the put-back: a request
// whose context the SIGTERM cancelled while it read a body logs "Unexpected error when reading response body"
// (k8s.io/client-go@v0.34.1 rest/request.go:1196, logger.Error on any read error but an http2 stream's).
func quietClientGo() {
	klog.SetLogger(logr.Discard())
}

// outcome is a command's exit code and the last line it prints.
func outcome(name string, err error) (int, string) {
	var usageErr *input.UsageError

	var failure *report.Failure

	switch {
	case err == nil:
		return exitOK, ""
	case errors.As(err, &usageErr):
		return exitUsage, fmt.Sprintf("upgrader: %s: %s", name, usageErr.Msg)
	case errors.As(err, &failure):
		return exitFailed, failure.Line()
	default:
		return exitFailed, (&report.Failure{Node: "-", Check: name, Detail: err.Error(), Look: "upgrader " + name + " --help"}).Line()
	}
}

// checked is one command line checked: the exit code and last line the command would have given
// (0 and "" when it would go on to contact what it is about).
func checked(argv []string, stdin io.Reader) (int, string) {
	if len(argv) == 0 {
		return exitUsage, "upgrader: check-input: give the command to check: check-input -- COMMAND [flags]"
	}

	cmd, ok := commands[argv[0]]
	if !ok {
		return exitUsage, fmt.Sprintf("upgrader: check-input: unknown command %q", argv[0])
	}

	_, err := cmd.parse(argv[1:], stdin)

	return outcome(argv[0], err)
}

// batchItem is one line of `check-input --batch`: a command line and the stdin it would be given.
type batchItem struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin"`
}

// check is check-input: `-- COMMAND [flags]` with the command's stdin, or `--batch`, one JSON
// object per line ({"args": [COMMAND, flags...], "stdin": "..."}), answered on stdout line by line
// ({"exit": 0|2, "error": the command's own last line}).
func check(argv []string) int {
	switch {
	case len(argv) > 0 && argv[0] == "--":
		code, line := checked(argv[1:], os.Stdin)
		if line == "" {
			line = fmt.Sprintf("upgrader: %s: %s: the arguments and stdin are as it reads them (nothing was contacted)", checkInput, argv[1])
		}

		fmt.Fprintln(os.Stderr, line)

		return code
	case len(argv) == 1 && argv[0] == "--batch":
		return batch(os.Stdin, os.Stdout)
	}

	fmt.Fprintf(os.Stderr, "upgrader: %s: give -- COMMAND [flags] (its stdin on stdin), or --batch\n", checkInput)

	return exitUsage
}

func batch(in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)

	enc := json.NewEncoder(out)

	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}

		var item batchItem

		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()

		if err := dec.Decode(&item); err != nil {
			fmt.Fprintf(os.Stderr, "upgrader: %s: --batch: line %d is not {\"args\": [...], \"stdin\": \"...\"}: %s\n", checkInput, n, err)

			return exitUsage
		}

		code, line := checked(item.Args, strings.NewReader(item.Stdin))
		if err := enc.Encode(map[string]any{"exit": code, "error": line}); err != nil {
			return exitFailed
		}
	}

	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "upgrader: %s: --batch: %s\n", checkInput, err)

		return exitUsage
	}

	return exitOK
}
