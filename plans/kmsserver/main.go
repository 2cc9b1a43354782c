// The Ainur's KMS: Talos's `kms` disk-encryption key provider (the siderolabs/kms-client v0.2.0 API,
// the one Talos v1.13.9 pins in its go.mod), sealing each machine's volume passphrase to that machine.
//
// Talos (internal/pkg/encryption/keys/kms.go at v1.13.9) calls Seal once when it formats a volume, with
// 32 random bytes and the node's SMBIOS UUID, stores the answer in the LUKS2 header's token, and calls
// Unseal with that answer and its UUID at every boot. This server seals with AES-256-GCM under one key
// (a Pulumi secret, mounted from a Kubernetes Secret) and the node's UUID as the associated data, so a
// blob unseals only for the node it was sealed for; an altered blob or another node's is refused
// (PermissionDenied), never answered with anything else.
//
// It logs the method, the peer and a tag of the node (a keyed hash: the same node, the same tag), never the
// node's UUID (with a stolen disk's blob, the UUID is all an Unseal asks for, and the logs leave the Pi), the
// key, the passphrase or the blob.
//
// It answers only the addresses the --admitted file lists (the Arda machines', one CIDR a line), read at every
// call, so a new machine needs no restart: the NetworkPolicy admits the same, but processes on the Pi's own host
// network reach the pod whatever the policy says, and this check is the server's own.
//
// The TLS pair is read again at every handshake that finds the files changed: `pulumi up` renews the
// certificate in its last 30 days and the kubelet swaps the Secret's files in place, with no restart of the pod.
//
// The pod builds this file with the pinned Go image (plans.kms) and the tests build the very same file
// (tests/plans/test_kms_server.py), so what is tested is what runs.
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
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

// tagLabel derives the log's node tags from the key: a tag names a node to whoever reads the logs, never its UUID.
const tagLabel = "iluvatar-kms/v1 log tag"

type server struct {
	kms.UnimplementedKMSServiceServer

	aead     cipher.AEAD
	tagKey   []byte
	admitted string
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

	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(tagLabel))

	return &server{aead: aead, tagKey: mac.Sum(nil)}, nil
}

// tag names a node in the logs: the first 8 bytes of an HMAC of its lower-cased UUID under a key derived from
// the KMS key, so the logs tell one node's calls apart and never carry what an Unseal asks for.
func (s *server) tag(node string) string {
	mac := hmac.New(sha256.New, s.tagKey)
	mac.Write([]byte(strings.ToLower(node)))

	return "node#" + hex.EncodeToString(mac.Sum(nil)[:8])
}

// admits reads the admitted file (a CIDR a line; blank lines and # comments skipped) and says whether the
// peer's address is in it. An unreadable or malformed file admits no one: the server fails closed.
func (s *server) admits(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "no peer address")
	}

	addr, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return status.Error(codes.PermissionDenied, "no peer address")
	}

	text, err := os.ReadFile(s.admitted)
	if err != nil {
		log.Printf("refused %s: the admitted list cannot be read: %s", p.Addr, err)

		return status.Error(codes.PermissionDenied, "this address is not an admitted machine")
	}

	for line := range strings.Lines(string(text)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}

		prefix, err := netip.ParsePrefix(line)
		if err != nil {
			log.Printf("refused %s: the admitted list has %q, not a CIDR", p.Addr, line)

			return status.Error(codes.PermissionDenied, "this address is not an admitted machine")
		}

		if prefix.Contains(addr.Addr().Unmap()) {
			return nil
		}
	}

	log.Printf("refused %s: not an admitted address", p.Addr)

	return status.Error(codes.PermissionDenied, "this address is not an admitted machine")
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
	if err := s.admits(ctx); err != nil {
		return nil, err
	}

	if err := checkNode(req.NodeUuid); err != nil {
		log.Printf("seal refused: from %s: the node is not a UUID", from(ctx))

		return nil, err
	}

	if len(req.Data) != passphraseSize {
		log.Printf("seal refused: %s from %s: %d bytes, not %d", s.tag(req.NodeUuid), from(ctx), len(req.Data), passphraseSize)

		return nil, status.Errorf(codes.InvalidArgument, "data must be %d bytes", passphraseSize)
	}

	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, status.Error(codes.Internal, "no randomness")
	}

	out := append([]byte{version}, nonce...)
	out = s.aead.Seal(out, nonce, req.Data, associatedData(req.NodeUuid))

	log.Printf("sealed: %s from %s", s.tag(req.NodeUuid), from(ctx))

	return &kms.Response{Data: out}, nil
}

// Unseal decrypts a blob Seal made for the same node, and refuses any other.
func (s *server) Unseal(ctx context.Context, req *kms.Request) (*kms.Response, error) {
	if err := s.admits(ctx); err != nil {
		return nil, err
	}

	if err := checkNode(req.NodeUuid); err != nil {
		log.Printf("unseal refused: from %s: the node is not a UUID", from(ctx))

		return nil, err
	}

	head := 1 + s.aead.NonceSize()
	if len(req.Data) != head+passphraseSize+s.aead.Overhead() || req.Data[0] != version {
		log.Printf("unseal refused: %s from %s: not a sealed passphrase", s.tag(req.NodeUuid), from(ctx))

		return nil, status.Error(codes.InvalidArgument, "not a sealed passphrase of this KMS")
	}

	plain, err := s.aead.Open(nil, req.Data[1:head], req.Data[head:], associatedData(req.NodeUuid))
	if err != nil {
		// Another node's blob, an altered one or one sealed under another key: all alike to the caller.
		log.Printf("unseal refused: %s from %s: the blob is not this node's or was altered", s.tag(req.NodeUuid), from(ctx))

		return nil, status.Error(codes.PermissionDenied, "the sealed passphrase is not this node's, or was altered")
	}

	log.Printf("unsealed: %s from %s", s.tag(req.NodeUuid), from(ctx))

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

// certificates serves the TLS pair from its files, read again when they change: the kubelet swaps a Secret
// volume's files in place (a new ..data directory, then the symlink moved), so a renewed certificate reaches
// the server with no restart. A pair that does not load (the swap seen half-way, a key that does not match)
// leaves the last good one in use; the next handshake tries again.
type certificates struct {
	certPath, keyPath string

	mu      sync.Mutex
	current *tls.Certificate
	seen    [2]fileState
}

type fileState struct {
	size    int64
	modTime int64
	inode   uint64
}

func stat(path string) (fileState, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileState{}, err
	}

	state := fileState{size: info.Size(), modTime: info.ModTime().UnixNano()}
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		state.inode = sys.Ino
	}

	return state, nil
}

func (c *certificates) load() error {
	certState, err := stat(c.certPath)
	if err != nil {
		return err
	}

	keyState, err := stat(c.keyPath)
	if err != nil {
		return err
	}

	seen := [2]fileState{certState, keyState}

	c.mu.Lock()
	defer c.mu.Unlock()

	if c.current != nil && seen == c.seen {
		return nil
	}

	pair, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return err
	}

	if c.current != nil {
		log.Printf("the TLS certificate changed: serving the new one")
	}

	c.current, c.seen = &pair, seen

	return nil
}

func (c *certificates) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if err := c.load(); err != nil {
		log.Printf("the TLS certificate could not be read again, the last one serves: %s", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	return c.current, nil
}

func main() {
	listen := flag.String("listen", ":4050", "address to serve gRPC on")
	keyPath := flag.String("key", "", "file holding the KMS key: 32 bytes, base64")
	certPath := flag.String("tls-cert", "", "the server certificate (PEM)")
	tlsKeyPath := flag.String("tls-key", "", "the server certificate's key (PEM)")
	admitted := flag.String("admitted", "", "file listing the addresses served: a CIDR a line")
	flag.Parse()

	log.SetFlags(log.LstdFlags | log.LUTC)

	if err := run(*listen, *keyPath, *certPath, *tlsKeyPath, *admitted); err != nil {
		log.Printf("error: %s", err)
		os.Exit(1)
	}
}

func run(listen, keyPath, certPath, tlsKeyPath, admitted string) error {
	if keyPath == "" || certPath == "" || tlsKeyPath == "" {
		return errors.New("--key, --tls-cert and --tls-key are required: the KMS serves TLS only")
	}

	if admitted == "" {
		return errors.New("--admitted is required: the KMS answers only the machines it lists")
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

	srv.admitted = admitted

	pairs := &certificates{certPath: certPath, keyPath: tlsKeyPath}
	if err := pairs.load(); err != nil {
		return fmt.Errorf("the TLS certificate: %w", err)
	}

	creds := credentials.NewTLS(&tls.Config{GetCertificate: pairs.get, MinVersion: tls.VersionTLS13})
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
