// etcd-3.7: etcd 3.7.1, the etcd Talos v1.14.1 runs (its DefaultEtcdVersion, pkg/machinery/constants/constants.go:443),
// with its etcdctl and etcdutl, one multi-call binary as the tests' control plane is (tools/kube-control-plane):
//
//	etcd-3.7 etcd|etcdctl|etcdutl [flags]
//
// Each is the etcd release's own command, called as its main package calls it: etcd from go.etcd.io/etcd/server/v3,
// etcdctl from go.etcd.io/etcd/etcdctl/v3 (whose snapshot save is the client's Snapshot API, as Talos v1.14.1's
// EtcdSnapshot takes one with client/v3 v3.7.1), etcdutl from go.etcd.io/etcd/etcdutl/v3, all v3.7.1. The restore
// drill of a stack on Talos 1.14 restores Arda's snapshots with this etcdutl, and the test starts this etcd on what
// it restored (plans/drill.py, tests/test_drill.py).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

const usage = "usage: etcd-3.7 etcd|etcdctl|etcdutl [flags]"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}

	component, args := os.Args[1], os.Args[2:]
	switch component {
	case "etcd":
		// etcdmain.Main reads its flags from args[1:], as etcd's own main passes os.Args.
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "etcdctl":
		// etcdctl's main calls ctlv3.MustStart, whose cobra command reads os.Args[1:].
		os.Args = append([]string{"etcdctl"}, args...)
		ctlv3.MustStart()
	case "etcdutl":
		os.Exit(etcdutlMain(args))
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n%s\n", component, usage)
		os.Exit(2)
	}
}

// etcdutlMain is etcdutl's command as its own main builds it (go.etcd.io/etcd/etcdutl/v3 v3.7.1 ctl.go, whose package
// main cannot be imported): the global --timeout and --write-out flags and its subcommands from the etcdutl package.
func etcdutlMain(args []string) int {
	cobra.EnablePrefixMatching = true
	root := &cobra.Command{Use: "etcdutl", Short: "An administrative command line tool for etcd3.", SuggestFor: []string{"etcdutl"}}
	root.PersistentFlags().DurationVar(&etcdutl.FlockTimeout, "timeout", 10*time.Second, "time to wait to obtain a file lock on db file, 0 to block indefinitely")
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(
		etcdutl.NewDefragCommand(),
		etcdutl.NewSnapshotCommand(),
		etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(),
		etcdutl.NewCompletionCommand(),
		etcdutl.NewMigrateCommand(),
	)
	root.SetHelpTemplate(`{{.UsageString}}`)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}

	return 0
}
