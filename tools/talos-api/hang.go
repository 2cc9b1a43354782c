package main

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// A hung call, as a Talos node hangs one: the connection is up and answers HTTP/2 pings (grpc-go's
// transport runs apart from the handlers), the call is accepted, and nothing on the node ends it.
// apid proxies every call to machined (internal/app/apid/service.go:127-145 at Talos v1.13.0) in a
// context that is the caller's own (grpc-proxy v0.5.1 proxy/handler.go:58: context.WithCancel of the
// server stream's), with no deadline of its own, so a machined that does not answer (why it would
// not is not modelled: a guess) holds the call until the caller gives up. Then the call ends with
// the caller's own code (DeadlineExceeded or Canceled), as grpc-go's server ends a stream whose
// client went away.
//
// A node's script lists the methods that hang (`hang`: ["MachineService/Version", ...], as the call
// log names them); POST /nodes/NAME {"hang": []} makes later calls answer again (a call already
// hung stays hung until its caller gives up, as on a node).

// hangs reports whether a method hangs on this node now.
func (n *Node) hangs(method string) bool {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	return slices.Contains(n.spec.Hang, method)
}

// hung is a call held until its caller gives up.
func hung(ctx context.Context) error {
	<-ctx.Done()

	return status.FromContextError(ctx.Err()).Err()
}

// hangUnary runs after unaryInterceptor (which logs the call): a hung method never reaches its handler.
func (n *Node) hangUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if n.hangs(shortMethod(info.FullMethod)) {
		return nil, hung(ctx)
	}

	return handler(ctx, req)
}

func (n *Node) hangStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if n.hangs(shortMethod(info.FullMethod)) {
		return hung(ss.Context())
	}

	return handler(srv, ss)
}

// validateHang checks that each method a script hangs is one the stand-in serves.
func validateHang(methods []string) error {
	for _, m := range methods {
		if _, ok := rules["/machine."+m]; ok {
			continue
		}

		if _, ok := rules["/cosi.resource."+m]; ok {
			continue
		}

		return fmt.Errorf("hang: %q is not a method the stand-in serves (e.g. MachineService/Version)", m)
	}

	return nil
}
