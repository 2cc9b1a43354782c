// kube-control-plane: Arda's Kubernetes (1.34) for the tests' control plane, one multi-call binary
// (tools/kube_cluster.py), so the packages the components share compile and link once.
//
//	kube-control-plane etcd|etcdctl|etcdutl|kube-apiserver|kube-controller-manager|kube-scheduler [flags]
//
// Each component is the upstream command itself, called as its own main package calls it:
// kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes v1.34.1, and
// etcd from go.etcd.io/etcd/server/v3 v3.6.5 (Talos v1.12's etcd minor), which serves the 1.33 API
// server too, with its etcdctl and etcdutl (the restore drill's snapshot is taken through etcd's Snapshot API, as
// Talos's EtcdSnapshot takes it, and read by etcdutl: tests/test_drill.py). kwok is in the 1.33 binary (tools/kube-control-plane-1.33): v0.7.0 is built against
// Kubernetes 0.33 and does not compile against 0.34 (metav1.InitialEventsListBlueprintAnnotationKey).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

const usage = "usage: kube-control-plane etcd|etcdctl|etcdutl|kube-apiserver|kube-controller-manager|kube-scheduler [flags]"

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
	case "kube-apiserver":
		command := apiserver.NewAPIServerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "kube-controller-manager":
		command := controllermanager.NewControllerManagerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "kube-scheduler":
		command := scheduler.NewSchedulerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n%s\n", component, usage)
		os.Exit(2)
	}
}

// etcdutlMain is etcdutl's command as its own main builds it (go.etcd.io/etcd/etcdutl/v3 v3.6.5 ctl.go, whose
// package main cannot be imported): the global --write-out flag and its subcommands from the etcdutl package.
func etcdutlMain(args []string) int {
	cobra.EnablePrefixMatching = true
	root := &cobra.Command{Use: "etcdutl", Short: "An administrative command line tool for etcd3.", SuggestFor: []string{"etcdutl"}}
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
