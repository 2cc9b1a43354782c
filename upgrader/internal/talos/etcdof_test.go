package talos

import (
	"errors"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

func TestClassifyEtcd(t *testing.T) {
	unread := errors.New("connection refused")

	for _, tc := range []struct {
		name       string
		service    string
		serviceErr error
		empty      bool
		dataErr    error
		kind       etcdKind
		detail     string
	}{
		{name: "data held, whatever the service", service: "Failed", empty: false, kind: etcdHeld,
			detail: "holds etcd data (/var/lib/etcd is not empty; etcd Failed; its member list: L)"},
		{name: "running", service: "Running", empty: true, kind: etcdHeld, detail: "runs etcd (its member list: L)"},
		{name: "running, data unread", service: "Running", dataErr: unread, kind: etcdHeld, detail: "runs etcd (its member list: L)"},
		{name: "preparing over empty", service: "Preparing", empty: true, kind: etcdNone,
			detail: "waits to join or for a bootstrap (etcd Preparing, /var/lib/etcd empty)"},
		// Talos's etcd gave up joining after EtcdJoinTimeout: no restart until its next boot, and no data.
		{name: "failed over empty", service: "Failed", empty: true, kind: etcdNone,
			detail: "gave up joining (etcd Failed, /var/lib/etcd empty: no etcd data; Talos asks again at its next boot)"},
		{name: "another state over empty", service: "Finished", empty: true, kind: etcdNone, detail: "has etcd Finished, /var/lib/etcd empty: no etcd data"},
		// What was not read is never taken for empty.
		{name: "service unread over empty", serviceErr: unread, empty: true, kind: etcdUnknown,
			detail: "has etcd unread (connection refused), /var/lib/etcd empty (its member list: L)"},
		{name: "failed, data unread", service: "Failed", dataErr: unread, kind: etcdUnknown,
			detail: "has etcd Failed, /var/lib/etcd unread: connection refused (its member list: L)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, detail := classifyEtcd(tc.service, tc.serviceErr, tc.empty, tc.dataErr, "L")
			if kind != tc.kind || detail != tc.detail {
				t.Errorf("classifyEtcd = %d, %q; want %d, %q", kind, detail, tc.kind, tc.detail)
			}
		})
	}
}

func TestReadyButNode(t *testing.T) {
	status := func(ready bool, names ...string) Status {
		ms := runtime.MachineStatusSpec{Stage: runtime.MachineStageRunning}
		ms.Status.Ready = ready

		s := Status{Stage: ms.Stage.String(), Ready: ready}
		for _, n := range names {
			s.unmet = append(s.unmet, n+": x")
			s.names = append(s.names, n)
		}

		return s
	}

	for _, tc := range []struct {
		name string
		ms   Status
		want bool
	}{
		{name: "ready", ms: status(true), want: false},
		{name: "only the Node", ms: status(false, "nodeReady"), want: true},
		{name: "the Node and a service", ms: status(false, "services", "nodeReady"), want: false},
		{name: "a service only", ms: status(false, "services"), want: false},
		{name: "not ready, nothing named", ms: status(false), want: false},
	} {
		if got := tc.ms.ReadyButNode(); got != tc.want {
			t.Errorf("%s: ReadyButNode() = %v; want %v", tc.name, got, tc.want)
		}
	}
}
