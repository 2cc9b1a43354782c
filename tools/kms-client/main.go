// A KMS client that speaks to the Ainur's KMS as a Talos node does, for the tests (tests/plans/test_kms_server.py).
//
// Each step is Talos v1.13.9's own (internal/pkg/encryption/keys/kms.go), with the kms-client v0.2.0 API its
// go.mod pins:
//   - the endpoint is parsed as internal/pkg/endpoint/endpoint.go:23-45 parses it (`https://` is TLS, no port is :443);
//   - TLS trusts the machine's CA bundle only (kms.go:139-141, httpdefaults.RootCAs, pkg/httpdefaults/tls.go:26-57:
//     the bundle with the config's TrustedRootsConfig; here the file --ca names);
//   - `seal` is NewKey (kms.go:53-93): a 10 s bound, 32 random bytes, Seal{NodeUuid, Data}; the LUKS passphrase is
//     the bytes in base64 (kms.go:92), the answer the token's sealedData;
//   - `unseal` is GetKey (kms.go:96-131): Unseal{NodeUuid, Data: sealedData}, the passphrase the answer in base64.
//   - a failed open is retried: Talos's volume manager tags it Retryable (block/internal/volumes/encrypt.go:103) and
//     tries again every 30 s (block/volume_manager.go:135); --retry-every is that tick, --attempts bounds it here.
//
// Talos dials through its proxy dialer (dialer.DynamicProxyDialerWithTLSConfig); with no proxy set it is a plain
// dial, which is what grpc.NewClient does here.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/siderolabs/kms-client/api/kms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// endpoint.go:13.
var urlSchemeMatcher = regexp.MustCompile(`[a-zA-z]+://`)

// parse is endpoint.Parse (internal/pkg/endpoint/endpoint.go:23-45 at v1.13.9).
func parse(param string) (host string, insecureTransport bool, err error) {
	if !urlSchemeMatcher.MatchString(param) {
		param = "grpc://" + param
	}

	u, err := url.Parse(param)
	if err != nil {
		return "", false, err
	}

	host = u.Host
	if u.Port() == "" && u.Scheme == "https" {
		host += ":443"
	}

	return host, u.Scheme == "grpc", nil
}

func conn(endpoint, caPath string) (*grpc.ClientConn, error) {
	host, plain, err := parse(endpoint)
	if err != nil {
		return nil, err
	}

	var creds credentials.TransportCredentials

	if plain {
		creds = insecure.NewCredentials()
	} else {
		pem, err := os.ReadFile(caPath)
		if err != nil {
			return nil, err
		}

		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caPath)
		}

		creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
	}

	return grpc.NewClient(host, grpc.WithTransportCredentials(creds))
}

type result struct {
	Passphrase string `json:"passphrase"`
	Sealed     string `json:"sealed,omitempty"`
}

func once(op, endpoint, caPath, node string, sealed []byte) (*result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := conn(endpoint, caPath)
	if err != nil {
		return nil, fmt.Errorf("error dialing KMS endpoint %q: %w", endpoint, err)
	}

	defer c.Close() //nolint:errcheck

	client := kms.NewKMSServiceClient(c)

	if op == "seal" {
		key := make([]byte, 32)
		if _, err = io.ReadFull(rand.Reader, key); err != nil {
			return nil, err
		}

		resp, err := client.Seal(ctx, &kms.Request{NodeUuid: node, Data: key})
		if err != nil {
			return nil, fmt.Errorf("failed to seal KMS passphrase: %w", err)
		}

		return &result{Passphrase: base64.StdEncoding.EncodeToString(key), Sealed: base64.StdEncoding.EncodeToString(resp.Data)}, nil
	}

	resp, err := client.Unseal(ctx, &kms.Request{NodeUuid: node, Data: sealed})
	if err != nil {
		return nil, fmt.Errorf("failed to unseal KMS passphrase: %w", err)
	}

	return &result{Passphrase: base64.StdEncoding.EncodeToString(resp.Data)}, nil
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "seal" && os.Args[1] != "unseal") {
		fmt.Fprintln(os.Stderr, "usage: kms-client seal|unseal --endpoint URL --ca FILE --node UUID [--sealed BASE64] [--attempts N --retry-every D]")
		os.Exit(2)
	}

	op := os.Args[1]
	flags := flag.NewFlagSet(op, flag.ExitOnError)
	endpoint := flags.String("endpoint", "", "the KMS endpoint, as machine config's encryption key `kms.endpoint`")
	caPath := flags.String("ca", "", "the CA bundle the node trusts")
	node := flags.String("node", "", "the node's UUID")
	sealedText := flags.String("sealed", "", "unseal: the LUKS token's sealedData, base64")
	attempts := flags.Int("attempts", 1, "tries before giving up")
	every := flags.Duration("retry-every", 30*time.Second, "the wait between tries (Talos's volume manager: 30s)")
	_ = flags.Parse(os.Args[2:])

	sealed, err := base64.StdEncoding.DecodeString(*sealedText)
	if err != nil {
		fmt.Fprintln(os.Stderr, "--sealed is not base64")
		os.Exit(2)
	}

	for attempt := 1; ; attempt++ {
		out, err := once(op, *endpoint, *caPath, *node, sealed)
		if err == nil {
			_ = json.NewEncoder(os.Stdout).Encode(out)

			return
		}

		// The gRPC code first, so the tests read the refusal exactly; the tests wait on this line for a retry.
		code := "Unknown"
		var st interface{ GRPCStatus() *status.Status }
		if errors.As(err, &st) {
			code = st.GRPCStatus().Code().String()
		}

		fmt.Fprintf(os.Stderr, "attempt %d failed: %s: %s\n", attempt, code, err)

		if attempt >= *attempts {
			os.Exit(1)
		}

		time.Sleep(*every)
	}
}
