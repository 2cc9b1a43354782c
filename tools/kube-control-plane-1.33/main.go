// kube-control-plane (1.33): the Ainur's Kubernetes minor for the tests' control plane
// (tools/kube_cluster.py), one multi-call binary so shared packages compile and link once:
//
//	kube-control-plane kube-apiserver|kube-controller-manager|kube-scheduler|kwok|kubectl [flags]
//
// kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes v1.33.4, kubectl
// from k8s.io/kubectl v0.33.4 (what `k3s kubectl` embeds: the tests' stand-in k3s runs it), and
// kwok v0.7.0 (which plays the kubelet of every node, in both clusters: built against Kubernetes
// 0.33, it does not compile against 0.34). etcd comes from the 1.34 binary (tools/kube-control-plane).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

const usage = "usage: kube-control-plane kube-apiserver|kube-controller-manager|kube-scheduler|kwok|kubectl [flags]"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	switch component {
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
	case "kwok":
		os.Exit(kwok(args))
	case "kubectl":
		// k8s.io/kubernetes/cmd/kubectl's main, as k3s embeds it for `k3s kubectl`.
		os.Args = append([]string{"kubectl"}, args...)
		command := kubectl.NewDefaultKubectlCommand()
		if err := cli.RunNoErrOutput(command); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n%s\n", component, usage)
		os.Exit(2)
	}
}

// kwok is sigs.k8s.io/kwok/cmd/kwok's main: its global flags are parsed from os.Args first.
func kwok(args []string) int {
	os.Args = append([]string{"kwok"}, args...)
	// The Kubernetes components register a global --version flag (component-base/version/verflag)
	// that cobra would merge into kwok's root command, where kwok has its own: start kwok with the
	// empty global flag set its own binary has.
	pflag.CommandLine = pflag.NewFlagSet("kwok", pflag.ExitOnError)
	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsWhitelist.UnknownFlags = true
	flagset.Usage = func() {}
	ctx := signals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flagset)
	ctx, err := kwokconfig.InitFlags(ctx, flagset)
	if err != nil {
		logger.Error("Init config flags", err)
		return 1
	}
	command := kwokcmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	command.SetArgs(args)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", err)
		return 1
	}
	return 0
}
