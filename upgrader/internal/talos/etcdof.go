package talos

import (
	"context"
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/wait"
)

// classifyEtcd is what a control plane's etcd is when its member list did not answer (listErr), from the
// etcd service's state and its data directory, each as read (or why not). The one rule the bootstrap, the
// hand-over and apply's own "is etcd bootstrapped" all use:
//
//   - a data directory that is not empty holds a cluster's data, whatever the service does;
//   - an etcd that runs holds data;
//   - an etcd that does not run over a data directory read as empty holds none: Preparing (pulling its
//     image, asking to join or waiting for a bootstrap) or Failed. Talos's etcd asks to join for
//     EtcdJoinTimeout, 30 minutes, then PreFunc fails and the service is Failed with no restart
//     (internal/app/machined/pkg/system/services/etcd.go:311-320 at v1.12.4; service_runner.go:261-265;
//     system.go:200), until the Boot sequence's BootTimeout (70 minutes) reboots the machine and it asks
//     again. Neither state writes data: only a running etcd does;
//   - anything not read is unknown: a control plane that might hold etcd is never taken for empty.
func classifyEtcd(service string, serviceErr error, empty bool, dataErr error, listErr string) (etcdKind, string) {
	if serviceErr != nil {
		service = "unread (" + Message(serviceErr) + ")"
	}

	switch {
	case dataErr == nil && !empty:
		return etcdHeld, fmt.Sprintf("holds etcd data (%s is not empty; etcd %s; its member list: %s)", EtcdDataPath, service, listErr)
	case serviceErr == nil && service == "Running":
		return etcdHeld, fmt.Sprintf("runs etcd (its member list: %s)", listErr)
	case dataErr == nil && serviceErr == nil && service == "Preparing":
		return etcdNone, fmt.Sprintf("waits to join or for a bootstrap (etcd Preparing, %s empty)", EtcdDataPath)
	case dataErr == nil && serviceErr == nil && service == "Failed":
		return etcdNone, fmt.Sprintf("gave up joining (etcd Failed, %s empty: no etcd data; Talos asks again at its next boot)", EtcdDataPath)
	case dataErr == nil && serviceErr == nil:
		return etcdNone, fmt.Sprintf("has etcd %s, %s empty: no etcd data", service, EtcdDataPath)
	case dataErr == nil:
		return etcdUnknown, fmt.Sprintf("has etcd %s, %s empty (its member list: %s)", service, EtcdDataPath, listErr)
	}

	return etcdUnknown, fmt.Sprintf("has etcd %s, %s unread: %s (its member list: %s)", service, EtcdDataPath, Message(dataErr), listErr)
}

// EtcdOf is what one control plane says of its etcd, as the bootstrap asks it (askEtcd).
type EtcdOf struct {
	// Bootstrapped: its member list answers, or it holds etcd data (a cluster that lost quorum is bootstrapped).
	Bootstrapped bool
	// Empty: it holds none (maintenance mode, or an etcd that does not run over an empty data directory).
	Empty bool
	// Unreachable: it does not answer at all (neither Bootstrapped nor Empty).
	Unreachable bool
	// Detail is what it said, as a person reads it.
	Detail string
}

// AskEtcdOf asks one control plane what its etcd is, with classifyEtcd's rule.
func (t *Talosconfig) AskEtcdOf(ctx context.Context, n input.Node) EtcdOf {
	s := t.askEtcd(ctx, n)
	if s.kind == etcdAnswers {
		s.detail = fmt.Sprintf("answers etcd's member list (%s)", memberList(s.members))
	}

	return EtcdOf{
		Bootstrapped: s.kind == etcdAnswers || s.kind == etcdHeld,
		Empty:        s.kind == etcdNone,
		Unreachable:  !s.configured && s.kind == etcdUnknown,
		Detail:       s.detail,
	}
}

// EtcdServiceSays is the etcd service's state and its last message, as `talosctl service etcd` shows them
// ("" when they cannot be read): why a control plane's Boot sequence has not ended.
func EtcdServiceSays(ctx context.Context, c *client.Client) string {
	cctx, cancel := wait.Call(ctx)
	defer cancel()

	services, err := c.ServiceList(cctx)
	if err != nil {
		return ""
	}

	for _, m := range services.GetMessages() {
		for _, s := range m.GetServices() {
			if s.GetId() != "etcd" {
				continue
			}

			if msg := s.GetHealth().GetLastMessage(); msg != "" {
				return fmt.Sprintf("etcd %s: %s", s.GetState(), msg)
			}

			return "etcd " + s.GetState()
		}
	}

	return ""
}
