// The Ainur's KMS: Talos's `kms` disk-encryption key provider (the siderolabs/kms-client v0.2.0 API,
// the one Talos v1.13.9 pins in its go.mod), sealing each machine's volume passphrase to that machine.
//
// Talos (internal/pkg/encryption/keys/kms.go at v1.13.9) calls Seal once when it formats a volume, with
// 32 random bytes and the node's SMBIOS UUID, stores the answer in the LUKS2 header's token, and calls
// Unseal with that answer and its UUID at every boot. This server seals with AES-256-GCM under one key
// (a Pulumi secret, mounted from a Kubernetes Secret) and the node's UUID as the associated data, so a
// blob unseals only for the node it was sealed for; an altered blob or another node's is refused
// (PermissionDenied), never answered with anything else. It logs the method, the node and the peer,
// never the key, the passphrase or the blob.
//
// The pod builds this file with the pinned Go image (plans.kms) and the tests build the very same file
// (tests/plans/test_kms_server.py), so what is tested is what runs.
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/siderolabs/kms-client/api/kms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// passphraseSize is what Talos seals: 32 random bytes (kms.go NewKey, `make([]byte, 32)`), the size
// kms-client's pkg/constants.PassphraseSize names.
const passphraseSize = 32

// version is the blob's first byte: a later format (another key, another cipher) can be told apart.
const version byte = 1

// aadPrefix keeps this key's associated data apart from any other use of the same key.
const aadPrefix = "iluvatar-kms/v1 node "

// A node's UUID as Talos reports it (SMBIOS, hardware.SystemInformation): 36 characters, hex and dashes.
var uuidPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

type server struct {
	kms.UnimplementedKMSServiceServer

	aead cipher.AEAD
}

func newServer(key []byte) (*server, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the KMS key is %d bytes; it must be 32 (AES-256)", len(key))
	}

	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}

	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}

	return &server{aead: aead}, nil
}

func associatedData(node string) []byte {
	// Lower case: the same machine's UUID in either case is the same node.
	return []byte(aadPrefix + strings.ToLower(node))
}

func checkNode(node string) error {
	if !uuidPattern.MatchString(node) {
		return status.Error(codes.InvalidArgument, "node UUID is not a UUID")
	}

	return nil
}

func from(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}

	return "unknown"
}

// Seal encrypts a node's passphrase to that node.
func (s *server) Seal(ctx context.Context, req *kms.Request) (*kms.Response, error) {
	if err := checkNode(req.NodeUuid); err != nil {
		log.Printf("seal refused: node %q from %s: not a UUID", req.NodeUuid, from(ctx))

		return nil, err
	}

	if len(req.Data) != passphraseSize {
		log.Printf("seal refused: node %s from %s: %d bytes, not %d", req.NodeUuid, from(ctx), len(req.Data), passphraseSize)

		return nil, status.Errorf(codes.InvalidArgument, "data must be %d bytes", passphraseSize)
	}

	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, status.Error(codes.Internal, "no randomness")
	}

	out := append([]byte{version}, nonce...)
	out = s.aead.Seal(out, nonce, req.Data, associatedData(req.NodeUuid))

	log.Printf("sealed: node %s from %s", req.NodeUuid, from(ctx))

	return &kms.Response{Data: out}, nil
}

// Unseal decrypts a blob Seal made for the same node, and refuses any other.
func (s *server) Unseal(ctx context.Context, req *kms.Request) (*kms.Response, error) {
	if err := checkNode(req.NodeUuid); err != nil {
		log.Printf("unseal refused: node %q from %s: not a UUID", req.NodeUuid, from(ctx))

		return nil, err
	}

	head := 1 + s.aead.NonceSize()
	if len(req.Data) != head+passphraseSize+s.aead.Overhead() || req.Data[0] != version {
		log.Printf("unseal refused: node %s from %s: not a sealed passphrase", req.NodeUuid, from(ctx))

		return nil, status.Error(codes.InvalidArgument, "not a sealed passphrase of this KMS")
	}

	plain, err := s.aead.Open(nil, req.Data[1:head], req.Data[head:], associatedData(req.NodeUuid))
	if err != nil {
		// Another node's blob, an altered one or one sealed under another key: all alike to the caller.
		log.Printf("unseal refused: node %s from %s: the blob is not this node's or was altered", req.NodeUuid, from(ctx))

		return nil, status.Error(codes.PermissionDenied, "the sealed passphrase is not this node's, or was altered")
	}

	log.Printf("unsealed: node %s from %s", req.NodeUuid, from(ctx))

	return &kms.Response{Data: plain}, nil
}

func readKey(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}

	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("the KMS key in %s is not base64", path)
	}

	return key, nil
}

func main() {
	listen := flag.String("listen", ":4050", "address to serve gRPC on")
	keyPath := flag.String("key", "", "file holding the KMS key: 32 bytes, base64")
	certPath := flag.String("tls-cert", "", "the server certificate (PEM)")
	tlsKeyPath := flag.String("tls-key", "", "the server certificate's key (PEM)")
	flag.Parse()

	log.SetFlags(log.LstdFlags | log.LUTC)

	if err := run(*listen, *keyPath, *certPath, *tlsKeyPath); err != nil {
		log.Printf("error: %s", err)
		os.Exit(1)
	}
}

func run(listen, keyPath, certPath, tlsKeyPath string) error {
	if keyPath == "" || certPath == "" || tlsKeyPath == "" {
		return errors.New("--key, --tls-cert and --tls-key are required: the KMS serves TLS only")
	}

	key, err := readKey(keyPath)
	if err != nil {
		return err
	}

	srv, err := newServer(key)
	if err != nil {
		return err
	}

	clear(key)

	pair, err := tls.LoadX509KeyPair(certPath, tlsKeyPath)
	if err != nil {
		return fmt.Errorf("the TLS certificate: %w", err)
	}

	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})
	s := grpc.NewServer(grpc.Creds(creds))
	kms.RegisterKMSServiceServer(s, srv)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}

	// The tests wait for this line: the port is open from here on.
	log.Printf("serving on %s", lis.Addr())

	go func() {
		<-ctx.Done()
		s.GracefulStop()
	}()

	return s.Serve(lis)
}
