package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
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
