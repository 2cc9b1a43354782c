package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// talosCommand is the common start of a Talos command: its flags parsed, stdin read, a deadline.
func talosSecrets() (*Talos, *Secrets, error) {
	s, err := readSecrets(os.Stdin)
	if err != nil {
		return nil, nil, err
	}

	t, err := newTalos(s)

	return t, s, err
}

// runBootstrap bootstraps etcd on a control plane once. It waits (bounded) until the node answers
// the talosconfig's client certificate, retries what Talos answers while it is not ready, and
// takes "already bootstrapped" as success, so an interrupted `pulumi up` can always run it again.
func runBootstrap(ctx context.Context, args []string) error {
	f := newFlags("bootstrap")

	var nodes nodeList

	f.Var(&nodes, "node", "NAME=IP of the control plane to bootstrap")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	n, err := requireOne(nodes, "--node")
	if err != nil {
		return err
	}

	t, _, err := talosSecrets()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	c, err := t.connect(ctx, n)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	look := fmt.Sprintf("talosctl -n %s service etcd; talosctl -n %s logs etcd; talosctl -n %s dmesg", n.IP, n.IP, n.IP)
	progress(n.Name, "bootstrap: waiting for the node to answer with the client certificate")

	said := ""

	err = poll(ctx, pollEvery, func(ctx context.Context) error {
		cctx, cancel := callCtx(ctx)
		defer cancel()

		err := c.Bootstrap(cctx, &machineapi.BootstrapRequest{})
		code := status.Code(err)

		switch {
		case err == nil:
			progress(n.Name, "etcd bootstrapped")

			return nil
		case code == codes.AlreadyExists || strings.Contains(err.Error(), "etcd data directory is not empty"):
			progress(n.Name, "already bootstrapped (%s): nothing to do", status.Convert(err).Message())

			return nil
		case code == codes.InvalidArgument || code == codes.PermissionDenied || code == codes.Unauthenticated:
			return &permanent{checkf("bootstrap", look, "%s", grpcMessage(err))}
		case code == codes.Unimplemented && strings.Contains(err.Error(), "control plane"):
			return &permanent{checkf("bootstrap", look, "%s (is %s a control plane?)", grpcMessage(err), n.Name)}
		}

		// Unavailable and DeadlineExceeded (down, installing, or still in maintenance mode, which
		// trusts no client certificate), and FailedPrecondition (Talos: "bootstrap is not available
		// yet", "time is not in sync yet"): the node is not ready for it yet.
		if msg := grpcMessage(err); msg != said {
			progress(n.Name, "not ready for the bootstrap yet: %s", msg)

			said = msg
		}

		return checkf("bootstrap", look, "%s", grpcMessage(err))
	})
	if err != nil {
		return failure(n.Name, "bootstrap", look, err)
	}

	return nil
}

// runProbe classifies nodes; it never fails on what it finds (only on bad arguments).
func runProbe(ctx context.Context, args []string) error {
	f := newFlags("probe")

	var nodes nodeList

	f.Var(&nodes, "node", "NAME=IP (repeatable)")
	deadline := f.Duration("deadline", 3*time.Second, "how long each node has to answer")

	if err := f.parse(args); err != nil {
		return err
	}

	if len(nodes) == 0 {
		return usagef("give at least one --node NAME=IP")
	}

	if *deadline <= 0 {
		return usagef("--deadline must be positive")
	}

	t, _, err := talosSecrets()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()

	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		states = map[string]string{}
	)

	for _, n := range nodes {
		wg.Add(1)

		go func() {
			defer wg.Done()

			s, _ := t.classify(ctx, n) //nolint:errcheck

			mu.Lock()
			states[n.Name] = s
			mu.Unlock()

			progress(n.Name, "%s", s)
		}()
	}

	wg.Wait()

	return json.NewEncoder(os.Stdout).Encode(map[string]any{"nodes": states})
}

// runRemoveMember removes a gone node's etcd member through a remaining control plane.
func runRemoveMember(ctx context.Context, args []string) error {
	f := newFlags("remove-member")

	var cps nodeList

	name := f.String("name", "", "the etcd member (node name) to remove")
	f.Var(&cps, "control-plane", "NAME=IP of a remaining control plane (repeatable)")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	if *name == "" || len(cps) == 0 {
		return usagef("give --name and at least one --control-plane NAME=IP")
	}

	for _, cp := range cps {
		if cp.Name == *name {
			return usagef("%s is among the --control-plane nodes it would be removed through", *name)
		}
	}

	t, _, err := talosSecrets()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var removed bool

	err = poll(ctx, pollEvery, func(ctx context.Context) error {
		var last error

		for _, cp := range cps {
			c, err := t.connect(ctx, cp)
			if err != nil {
				return err
			}

			err = removeMember(ctx, c, *name, &removed)
			c.Close() //nolint:errcheck

			if err == nil {
				return nil
			}

			last = checkf("etcd", etcdLook(cp), "%s: %s", cp.Name, err)
		}

		return last
	})
	if err != nil {
		return failure(*name, "etcd", etcdLook(cps[0]), err)
	}

	if removed {
		progress(*name, "removed from etcd")
	} else {
		progress(*name, "not an etcd member: nothing to remove")
	}

	return nil
}

func removeMember(ctx context.Context, c *client.Client, name string, removed *bool) error {
	members, err := etcdMembers(ctx, c)
	if err != nil {
		return fmt.Errorf("the member list does not answer: %s", grpcMessage(err))
	}

	for _, m := range members {
		if m.GetHostname() != name {
			continue
		}

		cctx, cancel := callCtx(ctx)
		err := c.EtcdRemoveMemberByID(cctx, &machineapi.EtcdRemoveMemberByIDRequest{MemberId: m.GetId()})

		cancel()

		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("removing member %016x: %s", m.GetId(), grpcMessage(err))
		}

		*removed = true
	}

	return nil
}

// runEtcdSnapshot saves a snapshot of etcd from a control plane to a file (0600, written whole or not at all).
func runEtcdSnapshot(ctx context.Context, args []string) error {
	f := newFlags("etcd-snapshot")

	var nodes nodeList

	f.Var(&nodes, "node", "NAME=IP of a control plane")
	out := f.String("out", "", "the snapshot file")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	n, err := requireOne(nodes, "--node")
	if err != nil {
		return err
	}

	if *out == "" {
		return usagef("--out is required")
	}

	t, _, err := talosSecrets()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	c, err := t.connect(ctx, n)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	look := fmt.Sprintf("talosctl -n %s etcd snapshot %s", n.IP, *out)

	if err := poll(ctx, pollEvery, func(ctx context.Context) error {
		err := saveSnapshot(ctx, c, *out)
		if err != nil && !transient(err) {
			return &permanent{checkf("etcd-snapshot", look, "%s", err)}
		}

		if err != nil {
			return checkf("etcd-snapshot", look, "%s", grpcMessage(err))
		}

		return nil
	}); err != nil {
		return failure(n.Name, "etcd-snapshot", look, err)
	}

	progress(n.Name, "etcd snapshot saved to %s", *out)

	return nil
}

// saveSnapshot streams EtcdSnapshot into path (via a .part file, renamed once complete).
func saveSnapshot(ctx context.Context, c *client.Client, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}

	part := path + ".part"

	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}

	defer os.Remove(part) //nolint:errcheck

	r, err := c.EtcdSnapshot(ctx, &machineapi.EtcdSnapshotRequest{})
	if err != nil {
		f.Close() //nolint:errcheck

		return err
	}

	size, err := io.Copy(f, r)
	r.Close() //nolint:errcheck

	if err == nil {
		err = f.Sync()
	}

	if cerr := f.Close(); err == nil {
		err = cerr
	}

	if err != nil {
		return err
	}

	if size == 0 {
		return fmt.Errorf("the snapshot is empty")
	}

	return os.Rename(part, path)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}

	sort.Strings(out)

	return out
}
