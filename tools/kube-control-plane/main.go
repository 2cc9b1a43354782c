// kube-control-plane: the tests' Kubernetes control plane (tools/kube_cluster.py), one multi-call binary for both
// clusters, so the packages the components share compile and link once:
//
//	kube-control-plane etcd|etcdctl|etcdutl|kube-apiserver|kube-controller-manager|kube-scheduler|kwok|kubectl [flags]
//
// Each component is the upstream command itself, called as its own main package calls it: kube-apiserver,
// kube-controller-manager and kube-scheduler from k8s.io/kubernetes v1.35.1, kubectl from k8s.io/kubectl v0.35.1
// (what `k3s kubectl` embeds: the tests' stand-in k3s runs it), etcd from go.etcd.io/etcd/server/v3 v3.6.5, and kwok
// v0.8.0 (which plays the kubelet of every node, in both clusters), with etcd's etcdctl and etcdutl (the restore
// drill's snapshot is taken through etcd's Snapshot API, as Talos's EtcdSnapshot takes it, and read by etcdutl:
// tests/test_drill.py).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/server/v3/etcdmain"
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
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

const usage = "usage: kube-control-plane etcd|etcdctl|etcdutl|kube-apiserver|kube-controller-manager|kube-scheduler|kwok|kubectl [flags]"

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

// kwok is sigs.k8s.io/kwok/cmd/kwok's main: its global flags are parsed from os.Args first. Given no --config, it
// plays the stages kwok v0.7.0 played when none was configured (defaultStages).
func kwok(args []string) int {
	if !given(args, "--config") {
		stages, err := defaultStages()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kwok:", err)

			return 1
		}

		defer os.Remove(stages) //nolint:errcheck

		args = append([]string{"--config=" + stages}, args...)
	}

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

// defaultStages writes, as a kwok config file, the stages kwok v0.7.0 played when it was given none: a node initialized
// and Ready at once, its status heartbeat (a node lease duration being set, as tools/kube_cluster.py sets it), and pods
// Running when scheduled, Succeeded when a Job's, deleted when asked (v0.7.0 pkg/kwok/cmd/root.go:166-183,
// getDefaultNodeStages and getDefaultPodStages at 496-523). v0.8.0 plays none then and refuses to start ("no stages
// found", root.go:160-181), so the same stages come from its own embedded files (kustomize/stage/node/fast,
// node/heartbeat, pod/fast).
func defaultStages() (string, error) {
	f, err := os.CreateTemp("", "kwok-stages-*.yaml")
	if err != nil {
		return "", err
	}

	docs := []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeat, podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete}
	if _, err := f.WriteString(strings.Join(docs, "\n---\n")); err != nil {
		f.Close() //nolint:errcheck

		return "", err
	}

	return f.Name(), f.Close()
}

// given: a flag among the arguments, as --flag=value or --flag value.
func given(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}

	return false
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
