package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// otherControlPlanes are the talosconfig's endpoints (the control planes) but the node's own
// addresses: where a node that is gone, reset or wiped is removed from the cluster through.
func (t *Talos) otherControlPlanes(self Node, also ...string) []Node {
	mine := append([]string{self.IP}, also...)

	var out []Node

	for _, ep := range t.cfg.Contexts[t.cfg.Context].Endpoints {
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			host, port = ep, self.port()
		}

		if slices.Contains(mine, host) {
			continue
		}

		out = append(out, Node{Name: host, IP: host, Addr: net.JoinHostPort(host, port)})
	}

	return out
}

func nodeIPs(nodes []Node) string {
	var ips []string
	for _, n := range nodes {
		ips = append(ips, n.IP)
	}

	return strings.Join(ips, ", ")
}

// probeRound bounds one round of asking every other control plane at once.
const probeRound = 5 * time.Second

// firstAnswering asks every node at once, round after round until bound, and returns the first in
// the given order of those running with the talosconfig's client certificate in a round (the same
// one however the answers race). With none running it returns nil and what each was last seen
// as; it stops waiting once every one answers in maintenance mode (reset or wiped: none will be).
func (t *Talos) firstAnswering(ctx context.Context, nodes []Node, bound time.Duration) (Node, *client.Client, string) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()

	for {
		states := make([]string, len(nodes))

		var wg sync.WaitGroup

		round, cancelRound := context.WithTimeout(ctx, probeRound)

		for i, n := range nodes {
			wg.Add(1)

			go func() {
				defer wg.Done()

				states[i], _ = t.classify(round, n) //nolint:errcheck
			}()
		}

		wg.Wait()
		cancelRound()

		var seen []string

		waiting := false

		for i, n := range nodes {
			if states[i] == stateRunning {
				if c, err := t.connect(ctx, n); err == nil {
					return n, c, ""
				}
			}

			waiting = waiting || states[i] != stateMaintenance
			seen = append(seen, fmt.Sprintf("%s %s", n.IP, states[i]))
		}

		if !waiting {
			return Node{}, nil, strings.Join(seen, ", ")
		}

		select {
		case <-ctx.Done():
			return Node{}, nil, strings.Join(seen, ", ")
		case <-time.After(pollEvery):
		}
	}
}

// removeStaleMember removes a node's etcd member through another control plane: the recorded
// member ID (when it is still this node's, or a member that never started) and any member of the
// node's name. It says what it did; nothing to remove is success.
func removeStaleMember(ctx context.Context, c *client.Client, name string, recorded uint64, via Node) error {
	members, err := etcdMembers(ctx, c)
	if err != nil {
		return fmt.Errorf("the member list does not answer: %s", grpcMessage(err))
	}

	removed := 0

	for _, m := range members {
		ours := m.GetHostname() == name || (m.GetId() == recorded && m.GetHostname() == "")

		if m.GetId() == recorded && !ours {
			progress(name, "the recorded etcd member %016x is %s's now: left alone", recorded, m.GetHostname())
		}

		if !ours {
			continue
		}

		cctx, cancel := callCtx(ctx)
		err := c.EtcdRemoveMemberByID(cctx, &machineapi.EtcdRemoveMemberByIDRequest{MemberId: m.GetId()})

		cancel()

		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("removing member %016x: %s", m.GetId(), grpcMessage(err))
		}

		progress(name, "etcd member %016x removed through %s", m.GetId(), via.IP)

		removed++
	}

	if removed == 0 {
		progress(name, "not an etcd member (checked through %s): nothing to remove", via.IP)
	}

	return nil
}

// kubeFrom is the kubeconfig from stdin, else the admin kubeconfig a control plane hands out.
func kubeFrom(ctx context.Context, s *Secrets, c *client.Client) (*Kube, error) {
	text := s.Kubeconfig

	if text == "" {
		cctx, cancel := callCtx(ctx)
		raw, err := c.Kubeconfig(cctx)

		cancel()

		if err != nil {
			return nil, fmt.Errorf("no kubeconfig on stdin, and the control plane hands none out: %s", grpcMessage(err))
		}

		text = string(raw)
	}

	return newKube(text, "")
}

// deleteNode deletes a node's Kubernetes Node object, retrying what the API answers while it is
// busy or unreachable (bounded by ctx); absent is success.
func deleteNode(ctx context.Context, k *Kube, name string) error {
	gone := false

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		cctx, cancel := callCtx(ctx)
		defer cancel()

		err := k.cs.CoreV1().Nodes().Delete(cctx, name, metav1.DeleteOptions{})

		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err):
			gone = true

			return nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return &permanent{err}
		}

		return err
	})
	if err != nil {
		return err
	}

	if gone {
		progress(name, "no Node %s in Kubernetes: nothing to delete", name)
	} else {
		progress(name, "Node %s deleted from Kubernetes", name)
	}

	return nil
}
