package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	storageapi "github.com/siderolabs/talos/pkg/machinery/api/storage"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
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

// printResource makes one resource API call as `talosctl get --insecure` makes it (machinery's client, TLS that
// verifies nothing, no client certificate: cmd/talosctl/pkg/talos/global/client.go:133-165 at v1.13.0), or with a
// talosconfig's certificate, and prints `OK <n resources>` or `CODE: message`: what a machine tells, or refuses, a
// caller (hardware.go, accessPolicy). `--verb create` tries a write, which Talos refuses everyone.
func printResource(args []string) error {
	fs := flag.NewFlagSet("resource", flag.ContinueOnError)
	talosconfig := fs.String("talosconfig", "", "the talosconfig (none: insecure, as in maintenance mode)")
	node := fs.String("node", "", "the node's IP:PORT")
	verb := fs.String("verb", "list", "list, get, create, or wipe (the device --id)")
	typ := fs.String("type", "", "the resource type, e.g. Disks.block.talos.dev")
	ns := fs.String("namespace", "runtime", "the resource namespace")
	id := fs.String("id", "", "the resource ID (get, create)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *node == "" || (*typ == "" && *verb != "wipe") {
		return errors.New("resource needs --node and --type (wipe: --id)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	opts := []client.OptionFunc{client.WithEndpoints(*node)}

	if *talosconfig != "" {
		tc, err := clientconfig.Open(*talosconfig)
		if err != nil {
			return err
		}

		opts = append(opts, client.WithConfig(tc))
	} else {
		opts = append(opts, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec
	}

	c, err := client.New(ctx, opts...)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	md := resource.NewMetadata(resource.Namespace(*ns), resource.Type(*typ), *id, resource.VersionUndefined)

	var n int

	switch *verb {
	case "list":
		var list resource.List

		if list, err = c.COSI.List(ctx, md); err == nil {
			n = len(list.Items)
		}
	case "get":
		if _, err = c.COSI.Get(ctx, md); err == nil {
			n = 1
		}
	case "create":
		err = c.COSI.Create(ctx, block.NewDisk(block.NamespaceName, *id))
	case "wipe":
		// Not the resource API: StorageService.BlockDeviceWipe of the device --id, as `talosctl wipe disk` asks it.
		_, err = c.StorageClient.BlockDeviceWipe(ctx, &storageapi.BlockDeviceWipeRequest{
			Devices: []*storageapi.BlockDeviceWipeDescriptor{{Device: *id, Method: storageapi.BlockDeviceWipeDescriptor_FAST}},
		})
	default:
		return fmt.Errorf("verb %q is not list, get, create or wipe", *verb)
	}

	if err != nil {
		st := status.Convert(err)
		_, err = fmt.Printf("%s: %s\n", st.Code(), st.Message())

		return err
	}

	_, err = fmt.Printf("OK %d\n", n)

	return err
}
