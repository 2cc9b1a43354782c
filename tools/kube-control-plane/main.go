// kube-control-plane: Arda's Kubernetes (1.34) for the tests' control plane, one multi-call binary
// (tools/kube_cluster.py), so the packages the components share compile and link once.
//
//	kube-control-plane etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]
//
// Each component is the upstream command itself, called as its own main package calls it:
// kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes v1.34.1, and
// etcd from go.etcd.io/etcd/server/v3 v3.6.5 (Talos v1.12's etcd minor), which serves the 1.33 API
// server too. kwok is in the 1.33 binary (tools/kube-control-plane-1.33): v0.7.0 is built against
// Kubernetes 0.33 and does not compile against 0.34 (metav1.InitialEventsListBlueprintAnnotationKey).
package main

import (
	"fmt"
	"os"

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

const usage = "usage: kube-control-plane etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]"

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
