package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Call is one RPC a node answered: which, with which key arguments, and the status code it returned.
type Call struct {
	Seq    int            `json:"seq"`
	Ms     int64          `json:"ms"` // since the stand-in started
	Node   string         `json:"node"`
	At     string         `json:"at"`     // the node's address the call reached (IP:port)
	Method string         `json:"method"` // e.g. MachineService/Upgrade
	Args   map[string]any `json:"args,omitempty"`
	Code   string         `json:"code"` // OK, AlreadyExists, ... (Running while it runs)
}

type callLog struct {
	mu    sync.Mutex
	start time.Time
	calls []Call
}

func newCallLog() *callLog { return &callLog{start: time.Now()} }

// begin logs a call as it arrives (the log's order is the order calls reach the nodes; a stream
// ends long after a call that follows it began), with its arguments when it has them (a unary call's, so a test
// that reads the log while the call still runs, an ApplyConfiguration that waits, sees what it was asked: in the
// same entry, never one logged without them), and finish fills in its arguments and code.
func (l *callLog) begin(ctx context.Context, node, method string, args map[string]any) int {
	at := ""
	if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
		at = p.LocalAddr.String()
	}

	l.mu.Lock()
	defer l.mu.Unlock()

	l.calls = append(l.calls, Call{Seq: len(l.calls) + 1, Ms: time.Since(l.start).Milliseconds(), Node: node, At: at, Method: method, Args: args, Code: "Running"})

	return len(l.calls) - 1
}

func (l *callLog) finish(i int, args map[string]any, code string) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.calls[i].Args, l.calls[i].Code = args, code
}

func (l *callLog) all() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()

	return append([]Call{}, l.calls...)
}

// rules are Talos's own (machined's authz rules) for every method the stand-in serves.
var rules = map[string]role.Set{
	"/machine.ImageService/Pull":                   role.MakeSet(role.Admin, role.Operator),
	"/machine.ImageService/List":                   role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.LifecycleService/Upgrade":            role.MakeSet(role.Admin),
	"/machine.MachineService/ApplyConfiguration":   role.MakeSet(role.Admin, role.Reader), // reader for maintenance only, checked in the handler
	"/machine.MachineService/Bootstrap":            role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdAlarmList":        role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	"/machine.MachineService/EtcdLeaveCluster":     role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdMemberList":       role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	"/machine.MachineService/EtcdRemoveMemberByID": role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdSnapshot":         role.MakeSet(role.Admin, role.Operator, role.EtcdBackup),
	"/machine.MachineService/EtcdStatus":           role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	"/machine.MachineService/ImageList":            role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/ImagePull":            role.MakeSet(role.Admin, role.Operator),
	"/machine.MachineService/Kubeconfig":           role.MakeSet(role.Admin),
	"/machine.MachineService/List":                 role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Read":                 role.MakeSet(role.Admin),
	"/machine.MachineService/Reboot":               role.MakeSet(role.Admin, role.Operator),
	"/machine.MachineService/Reset":                role.MakeSet(role.Admin),
	"/machine.MachineService/ServiceList":          role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/SystemStat":           role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Upgrade":              role.MakeSet(role.Admin),
	"/machine.MachineService/Version":              role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/Get":                     role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/List":                    role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/Watch":                   role.MakeSet(role.Admin, role.Operator, role.Reader),
	// Talos 1.13's table (machined.go:122-127 at v1.13.0): the reader for maintenance only, checked in the handler.
	"/storage.StorageService/BlockDeviceWipe": role.MakeSet(role.Admin, role.Reader),
}

type rolesKey struct{}

type notesKey struct{}

func rolesOf(ctx context.Context) role.Set {
	if r, ok := ctx.Value(rolesKey{}).(role.Set); ok {
		return r
	}

	return role.MakeSet()
}

// note adds a handler's own result (e.g. the mode AUTO resolved to) to the call's log entry.
func note(ctx context.Context, key string, value any) {
	if m, ok := ctx.Value(notesKey{}).(map[string]any); ok {
		m[key] = value
	}
}

// authorize is Talos's authz: roles from the client certificate's organizations; a client
// without one (maintenance mode) is a reader. A Talos 1.12 maintenance service enforces no
// rules of its own: each handler there answers for itself.
func (n *Node) authorize(ctx context.Context, method string) (context.Context, error) {
	roles := role.MakeSet(role.Reader)

	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
			roles, _ = role.Parse(info.State.VerifiedChains[0][0].Subject.Organization)
		}
	}

	ctx = context.WithValue(ctx, rolesKey{}, roles)

	n.c.mu.Lock()
	legacyMaintenance := n.maintenance && !n.lifecycleAPI()
	n.c.mu.Unlock()

	if legacyMaintenance {
		return ctx, nil
	}

	allowed, ok := rules[method]
	if !ok {
		allowed = role.MakeSet(role.Admin)
	}

	if !roles.IncludesAny(allowed) {
		return ctx, status.Error(codes.PermissionDenied, "not authorized")
	}

	return ctx, nil
}

func shortMethod(full string) string {
	for _, prefix := range []string{"/machine.", "/cosi.resource.", "/cluster.", "/storage."} {
		if len(full) > len(prefix) && full[:len(prefix)] == prefix {
			return full[len(prefix):]
		}
	}

	return full
}

func (n *Node) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	i := n.c.calls.begin(ctx, n.name, shortMethod(info.FullMethod), callArgs(req))
	notes := map[string]any{}
	ctx = context.WithValue(ctx, notesKey{}, notes)

	ctx, err := n.authorize(ctx, info.FullMethod)

	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}

	n.c.calls.finish(i, merge(callArgs(req), notes), status.Code(err).String())

	return resp, err
}

// recvStream remembers the request of a server-streaming call, for the log.
type recvStream struct {
	grpc.ServerStream

	ctx context.Context //nolint:containedctx
	req any
}

func (s *recvStream) Context() context.Context { return s.ctx }

func (s *recvStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.req == nil {
		s.req = m
	}

	return err
}

func (n *Node) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	i := n.c.calls.begin(ss.Context(), n.name, shortMethod(info.FullMethod), nil)
	notes := map[string]any{}
	ctx := context.WithValue(ss.Context(), notesKey{}, notes)

	ctx, err := n.authorize(ctx, info.FullMethod)

	wrapped := &recvStream{ServerStream: ss, ctx: ctx}
	if err == nil {
		err = handler(srv, wrapped)
	}

	n.c.calls.finish(i, merge(callArgs(wrapped.req), notes), status.Code(err).String())

	return err
}

func merge(a, b map[string]any) map[string]any {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}

	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}

	for k, v := range b {
		out[k] = v
	}

	return out
}

func containerd(ci *common.ContainerdInstance) string {
	return fmt.Sprintf("%s/%s", ci.GetDriver(), ci.GetNamespace())
}

// callArgs are the arguments a test asserts on, per request type.
func callArgs(req any) map[string]any {
	switch r := req.(type) {
	case *machineapi.ApplyConfigurationRequest:
		args := map[string]any{"mode": r.GetMode().String(), "dryRun": r.GetDryRun()}

		if cfg, err := configloader.NewFromBytes(r.GetData()); err == nil && cfg.Machine() != nil {
			args["installImage"] = cfg.Machine().Install().Image()
		}

		return args
	case *machineapi.UpgradeRequest:
		return map[string]any{"image": r.GetImage(), "stage": r.GetStage(), "force": r.GetForce(), "rebootMode": r.GetRebootMode().String()}
	case *machineapi.LifecycleServiceUpgradeRequest:
		return map[string]any{"image": r.GetSource().GetImageName(), "containerd": containerd(r.GetContainerd())}
	case *machineapi.ImageServicePullRequest:
		return map[string]any{"image": r.GetImageRef(), "containerd": containerd(r.GetContainerd())}
	case *machineapi.ImagePullRequest:
		return map[string]any{"image": r.GetReference(), "namespace": r.GetNamespace().String()}
	case *machineapi.RebootRequest:
		return map[string]any{"mode": r.GetMode().String()}
	case *machineapi.ResetRequest:
		var wipe []string
		for _, p := range r.GetSystemPartitionsToWipe() {
			if p.GetWipe() {
				wipe = append(wipe, p.GetLabel())
			}
		}

		return map[string]any{"graceful": r.GetGraceful(), "reboot": r.GetReboot(), "wipe": wipe}
	case *machineapi.BootstrapRequest:
		return map[string]any{"recoverEtcd": r.GetRecoverEtcd()}
	case *machineapi.EtcdRemoveMemberByIDRequest:
		return map[string]any{"memberId": fmt.Sprintf("%016x", r.GetMemberId())}
	case *machineapi.EtcdMemberListRequest:
		return map[string]any{"queryLocal": r.GetQueryLocal()}
	case *machineapi.ReadRequest:
		return map[string]any{"path": r.GetPath()}
	case *machineapi.ListRequest:
		return map[string]any{"root": r.GetRoot()}
	case *cosiv1alpha1.GetRequest:
		return map[string]any{"type": r.GetType(), "id": r.GetId()}
	case *cosiv1alpha1.ListRequest:
		return map[string]any{"type": r.GetType()}
	}

	return nil
}
