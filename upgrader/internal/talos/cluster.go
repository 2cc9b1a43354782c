package talos

import (
	"context"
	"errors"
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

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// OtherControlPlanes are the talosconfig's endpoints (the control planes) but the node's own
// addresses: where a node that is gone, reset or wiped is removed from the cluster through.
func (t *Talosconfig) OtherControlPlanes(self input.Node, also ...string) []input.Node {
	mine := append([]string{self.IP}, also...)

	var out []input.Node

	for _, ep := range t.cfg.Contexts[t.cfg.Context].Endpoints {
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			host, port = ep, self.Port()
		}

		if slices.Contains(mine, host) {
			continue
		}

		out = append(out, input.Node{Name: host, IP: host, Addr: net.JoinHostPort(host, port)})
	}

	return out
}

// probeRound bounds one round of asking every other control plane at once.
const probeRound = 5 * time.Second

// FirstAnswering asks every node at once, round after round until bound, and returns the first in
// the given order of those running with the talosconfig's client certificate in a round (the same
// one however the answers race). With none running it returns nil and what each was last seen
// as; it stops waiting once every one answers in maintenance mode (reset or wiped: none will be).
func (t *Talosconfig) FirstAnswering(ctx context.Context, nodes []input.Node, bound time.Duration) (input.Node, *client.Client, string) {
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

				states[i], _ = t.Classify(round, n) //nolint:errcheck
			}()
		}

		wg.Wait()
		cancelRound()

		var seen []string

		waiting := false

		for i, n := range nodes {
			if states[i] == Running {
				if c, err := t.Connect(ctx, n); err == nil {
					return n, c, ""
				}
			}

			waiting = waiting || states[i] != Maintenance
			seen = append(seen, fmt.Sprintf("%s %s", n.IP, states[i]))
		}

		if !waiting {
			return input.Node{}, nil, strings.Join(seen, ", ")
		}

		select {
		case <-ctx.Done():
			return input.Node{}, nil, strings.Join(seen, ", ")
		case <-time.After(wait.Every):
		}
	}
}

// RemoveStaleMember removes a node's etcd member through another control plane: the recorded
// member ID (when it is still this node's, or a member that never started) and any member of the
// node's name. It says what it did; nothing to remove is success.
func RemoveStaleMember(ctx context.Context, c *client.Client, name string, recorded uint64, via input.Node) error {
	members, err := EtcdMembers(ctx, c)
	if err != nil {
		return fmt.Errorf("the member list does not answer: %s", Message(err))
	}

	removed := 0

	for _, m := range members {
		ours := m.GetHostname() == name || (m.GetId() == recorded && m.GetHostname() == "")

		if m.GetId() == recorded && !ours {
			report.Progress(name, "the recorded etcd member %016x is %s's now: left alone", recorded, m.GetHostname())
		}

		if !ours {
			continue
		}

		cctx, cancel := wait.Call(ctx)
		err := c.EtcdRemoveMemberByID(cctx, &machineapi.EtcdRemoveMemberByIDRequest{MemberId: m.GetId()})

		cancel()

		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("removing member %016x: %s", m.GetId(), Message(err))
		}

		report.Progress(name, "etcd member %016x removed through %s", m.GetId(), via.IP)

		removed++
	}

	if removed == 0 {
		report.Progress(name, "not an etcd member (checked through %s): nothing to remove", via.IP)
	}

	return nil
}

// FetchKubeconfig asks the talosconfig's endpoints (control planes), then the node itself if it is one.
func (t *Talosconfig) FetchKubeconfig(ctx context.Context, n input.Node, controlPlane bool) (string, error) {
	var (
		errs []error
		text string
	)

	try := func(c *client.Client) bool {
		cctx, cancel := wait.Call(ctx)
		defer cancel()

		raw, err := c.Kubeconfig(cctx)
		if err != nil {
			errs = append(errs, err)

			return false
		}

		text = string(raw)

		return true
	}

	if c, err := t.ConnectEndpoints(ctx); err == nil {
		ok := try(c)
		c.Close() //nolint:errcheck

		if ok {
			return text, nil
		}
	} else {
		errs = append(errs, fmt.Errorf("the control planes: %w", err))
	}

	if controlPlane {
		if c, err := t.Connect(ctx, n); err == nil {
			ok := try(c)
			c.Close() //nolint:errcheck

			if ok {
				return text, nil
			}
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", n.IP, err))
		}
	}

	return "", fmt.Errorf("no kubeconfig on stdin, and the Talos API hands none out: %w", errors.Join(errs...))
}
