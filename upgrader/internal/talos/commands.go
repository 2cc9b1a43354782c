package talos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// ReadStdin reads a Talos command's stdin: the talosconfig is required (New checks its content
// when the command runs).
func ReadStdin(stdin io.Reader) (*input.Secrets, error) {
	s, err := input.ReadSecrets(stdin)
	if err != nil {
		return nil, err
	}

	if err := s.Require("talosconfig"); err != nil {
		return nil, err
	}

	return s, nil
}

// ParseProbe reads probe's arguments and stdin, contacting nothing; what it returns runs it.
//
// probe classifies nodes; it never fails on what it finds (only on bad arguments).
func ParseProbe(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("probe")

	var nodes input.NodeList

	f.Var(&nodes, "node", "NAME=IP (repeatable)")
	deadline := f.Duration("deadline", 3*time.Second, "how long each node has to answer")

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if len(nodes) == 0 {
		return nil, input.Usagef("give at least one --node NAME=IP")
	}

	if *deadline <= 0 {
		return nil, input.Usagef("--deadline must be positive")
	}

	s, err := ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return runProbe(ctx, s, nodes, *deadline) }, nil
}

// runProbe is probe: the talosconfig read, then every node asked at once.
func runProbe(ctx context.Context, s *input.Secrets, nodes input.NodeList, deadline time.Duration) error {
	t, err := New(s)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, deadline)
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

			s, err := t.Classify(ctx, n)

			mu.Lock()
			states[n.Name] = s
			mu.Unlock()

			if s == Unreachable {
				report.Progress(n.Name, "%s: %s", s, unreachableWhy(ctx, err, deadline))
			} else {
				report.Progress(n.Name, "%s", s)
			}
		}()
	}

	wg.Wait()

	return json.NewEncoder(os.Stdout).Encode(map[string]any{"nodes": states})
}

// unreachableWhy says what ended the asking of a node probe calls unreachable: the deadline, or
// an answer that came before it (a refused connection, a reset). Classify asks each node once over
// each kind of client, and no call of it retries: a refusal ends it at once, a node that never
// answers holds it until the probe's deadline, and the line says which, so a reader (and a test)
// knows the probe gave up by its own bound rather than by how long it happened to take.
func unreachableWhy(ctx context.Context, err error, deadline time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && status.Code(err) == codes.DeadlineExceeded {
		return fmt.Sprintf("no answer within the %s deadline", deadline)
	}

	return fmt.Sprintf("%s (asked once, before the %s deadline)", Message(err), deadline)
}

// ParseRemoveMember reads remove-member's arguments and stdin, contacting nothing; what it returns runs it.
//
// remove-member removes a gone node's etcd member through a remaining control plane.
func ParseRemoveMember(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("remove-member")

	var cps input.NodeList

	name := f.String("name", "", "the etcd member (node name) to remove")
	f.Var(&cps, "control-plane", "NAME=IP of a remaining control plane (repeatable)")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	if *name == "" || len(cps) == 0 {
		return nil, input.Usagef("give --name and at least one --control-plane NAME=IP")
	}

	for _, cp := range cps {
		if cp.Name == *name {
			return nil, input.Usagef("%s is among the --control-plane nodes it would be removed through", *name)
		}
	}

	s, err := ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return runRemoveMember(ctx, s, *name, cps, *timeout) }, nil
}

// runRemoveMember is remove-member: the talosconfig read, then the control planes.
func runRemoveMember(ctx context.Context, s *input.Secrets, name string, cps input.NodeList, timeout time.Duration) error {
	t, err := New(s)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var removed bool

	err = wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		var last error

		for _, cp := range cps {
			c, err := t.Connect(ctx, cp)
			if err != nil {
				return err
			}

			err = removeMember(ctx, c, name, &removed)
			c.Close() //nolint:errcheck

			if err == nil {
				return nil
			}

			last = report.Checkf("etcd", EtcdLook(cp), "%s: %s", cp.Name, err)
		}

		return last
	})
	if err != nil {
		return report.From(name, "etcd", EtcdLook(cps[0]), err)
	}

	if removed {
		report.Progress(name, "removed from etcd")
	} else {
		report.Progress(name, "not an etcd member: nothing to remove")
	}

	return nil
}

func removeMember(ctx context.Context, c *client.Client, name string, removed *bool) error {
	members, err := EtcdMembers(ctx, c)
	if err != nil {
		return fmt.Errorf("the member list does not answer: %s", Message(err))
	}

	for _, m := range members {
		if m.GetHostname() != name {
			continue
		}

		cctx, cancel := wait.Call(ctx)
		err := c.EtcdRemoveMemberByID(cctx, &machineapi.EtcdRemoveMemberByIDRequest{MemberId: m.GetId()})

		cancel()

		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("removing member %016x: %s", m.GetId(), Message(err))
		}

		*removed = true
	}

	return nil
}

// ParseEtcdSnapshot reads etcd-snapshot's arguments and stdin, contacting nothing; what it returns runs it.
//
// etcd-snapshot saves a snapshot of etcd from a control plane to a file (0600, written whole or not at all). With
// --keep the file is written once: an existing one (an earlier attempt's, from before anything changed) is kept and
// nothing is contacted, and one that appears meanwhile is never replaced.
func ParseEtcdSnapshot(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("etcd-snapshot")

	var nodes input.NodeList

	f.Var(&nodes, "node", "NAME=IP of a control plane")
	out := f.String("out", "", "the snapshot file")
	keep := f.Bool("keep", false, "keep an existing --out: write it once")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	n, err := input.RequireOne(nodes, "--node")
	if err != nil {
		return nil, err
	}

	if *out == "" {
		return nil, input.Usagef("--out is required")
	}

	s, err := ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return runEtcdSnapshot(ctx, s, n, *out, *keep, *timeout) }, nil
}

// runEtcdSnapshot is etcd-snapshot: the talosconfig read, then the node.
func runEtcdSnapshot(ctx context.Context, s *input.Secrets, n input.Node, out string, keep bool, timeout time.Duration) error {
	if keep {
		if info, err := os.Lstat(out); err == nil {
			if !info.Mode().IsRegular() {
				return &report.Failure{Node: n.Name, Check: "etcd-snapshot", Detail: out + " is in the way of the snapshot and is not a file: move it away", Look: "ls -l " + out}
			}

			report.Progress(n.Name, "etcd snapshot kept: %s is an earlier attempt's, from before anything changed (written once)", out)

			return nil
		}
	}

	t, err := New(s)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, err := t.Connect(ctx, n)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	look := fmt.Sprintf("talosctl -n %s etcd snapshot %s", n.IP, out)

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		save := SaveSnapshot
		if keep {
			save = saveSnapshotOnce
		}

		err := save(ctx, c, out)
		if errors.Is(err, fs.ErrExist) {
			return wait.Stop(report.Checkf("etcd-snapshot", "ls -l "+out, "%s appeared while the snapshot was taken and is kept: run again", out))
		}

		if err != nil && !Transient(err) {
			return wait.Stop(report.Checkf("etcd-snapshot", look, "%s", err))
		}

		if err != nil {
			return report.Checkf("etcd-snapshot", look, "%s", Message(err))
		}

		return nil
	}); err != nil {
		return report.From(n.Name, "etcd-snapshot", look, err)
	}

	report.Progress(n.Name, "etcd snapshot saved to %s", out)

	return nil
}

// SaveSnapshot streams EtcdSnapshot into path (via a .part file, renamed once complete).
func SaveSnapshot(ctx context.Context, c *client.Client, path string) error {
	return saveSnapshot(ctx, c, path, os.Rename)
}

// saveSnapshotOnce is SaveSnapshot that never replaces path: the complete .part is hard-linked to it, which fails with
// fs.ErrExist when the file is there (link(2): EEXIST).
func saveSnapshotOnce(ctx context.Context, c *client.Client, path string) error {
	return saveSnapshot(ctx, c, path, os.Link)
}

func saveSnapshot(ctx context.Context, c *client.Client, path string, finish func(part, path string) error) error {
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

	return finish(part, path)
}
