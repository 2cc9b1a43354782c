package main

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// servers is how many nodes go down at once, each by the call it answers: enough that the connection writers
// run late, as they do on a loaded machine.
const servers = 64

// delivered starts that many servers whose one call's handler starts stop on its own server before returning
// its reply (disrupt's way, with no delay), calls each once, and counts the replies that reached the client.
func delivered(t *testing.T, stop func(*grpc.Server)) int {
	t.Helper()

	var wg sync.WaitGroup

	got := make(chan bool, servers)

	for range servers {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}

		var srv *grpc.Server

		srv = grpc.NewServer(grpc.UnaryInterceptor(
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				resp, err := handler(ctx, req)

				go stop(srv)

				return resp, err
			}))
		healthpb.RegisterHealthServer(srv, health.NewServer())

		go srv.Serve(lis) //nolint:errcheck

		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}

		wg.Add(1)

		go func() {
			defer wg.Done()
			defer conn.Close() //nolint:errcheck

			_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			got <- err == nil
		}()
	}

	wg.Wait()
	close(got)

	n := 0

	for ok := range got {
		if ok {
			n++
		}
	}

	return n
}

// A node a call takes down answers that call first, whatever its connection's writer is doing.
func TestAReplyGivenBeforeTheNodeGoesDownReachesTheClient(t *testing.T) {
	for round := range 5 {
		if n := delivered(t, stopAfterReplies); n != servers {
			t.Fatalf("round %d: %d of %d replies reached their client", round, n, servers)
		}
	}
}
