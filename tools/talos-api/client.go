package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc/status"
)

// printKubeconfig fetches a node's admin kubeconfig as the Talos provider's talos_cluster_kubeconfig
// fetches it (terraform-provider-talos v0.8.1 pkg/talos/talos_cluster_kubeconfig_resource.go:212-221 through
// util.go:295-316, talosClientOp: a client of the talosconfig, the node in the context) and `talosctl
// kubeconfig` does: machinery's own client.Kubeconfig, which unpacks the .tar.gz. The provider first
// tries the node without a client certificate (a Disks call, for a machine in maintenance mode); a
// configured node refuses that, so the call that counts is this one.
func printKubeconfig(args []string) error {
	fs := flag.NewFlagSet("kubeconfig", flag.ContinueOnError)
	talosconfig := fs.String("talosconfig", "", "the talosconfig (its current context)")
	node := fs.String("node", "", "the node's IP (its API on Talos's port)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *talosconfig == "" || *node == "" {
		return errors.New("kubeconfig needs --talosconfig and --node")
	}

	tc, err := clientconfig.Open(*talosconfig)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.New(ctx, client.WithConfig(tc), client.WithEndpoints(*node))
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	raw, err := c.Kubeconfig(client.WithNode(ctx, *node))
	if err != nil {
		return err
	}

	_, err = os.Stdout.Write(raw)

	return err
}

// printBootstrap asks a node for a bootstrap as `talosctl bootstrap` does (talosctl's bootstrap
// command: one MachineService.Bootstrap call through machinery's client, no check of its own), and
// prints the answer's status code and message: what a person bootstrapping by hand gets, and what
// the upgrader's bootstrap did before it asked the other control planes first.
func printBootstrap(args []string) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	talosconfig := fs.String("talosconfig", "", "the talosconfig (its current context)")
	node := fs.String("node", "", "the node's IP (its API on Talos's port)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *talosconfig == "" || *node == "" {
		return errors.New("bootstrap needs --talosconfig and --node")
	}

	tc, err := clientconfig.Open(*talosconfig)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.New(ctx, client.WithConfig(tc), client.WithEndpoints(*node))
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	st := status.Convert(c.Bootstrap(ctx, &machineapi.BootstrapRequest{}))
	_, err = fmt.Printf("%s: %s\n", st.Code(), st.Message())

	return err
}
