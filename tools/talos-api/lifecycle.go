package main

import (
	"crypto/sha256"
	"fmt"
	"log"
	"time"

	"github.com/siderolabs/crypto/x509"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// lifecycleService is Talos 1.13's machine.LifecycleService (internal/app/lifecycle): it runs the
// installer from an image already pulled, streams its progress and exit code, and reboots nothing.
type lifecycleService struct {
	machineapi.UnimplementedLifecycleServiceServer

	n *Node
}

func (s *lifecycleService) Upgrade(req *machineapi.LifecycleServiceUpgradeRequest, ss grpc.ServerStreamingServer[machineapi.LifecycleServiceUpgradeResponse]) error {
	n := s.n
	c := n.c
	c.mu.Lock()

	if n.upgrading {
		c.mu.Unlock()

		return status.Error(codes.FailedPrecondition, "another installation/upgrade is already in progress")
	}

	image := req.GetSource().GetImageName()
	if image == "" {
		c.mu.Unlock()

		return status.Error(codes.InvalidArgument, "installer image name is required")
	}

	if !n.pulled[containerd(req.GetContainerd())+"/"+image] {
		c.mu.Unlock()

		return status.Error(codes.Internal, fmt.Sprintf("upgrade failed: installer image %q not found in containerd store: not found", image))
	}

	n.upgrading = true
	gen := n.gen
	exitCode := n.spec.Upgrade.ExitCode
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		n.upgrading = false
		c.mu.Unlock()
	}()

	send := func(p *machineapi.LifecycleServiceInstallProgress) error {
		return ss.Send(&machineapi.LifecycleServiceUpgradeResponse{Progress: p})
	}

	for _, msg := range []string{"running the installer from " + image, "installing the bootloader and the new Talos image"} {
		if err := send(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_Message{Message: msg}}); err != nil {
			return err
		}

		time.Sleep(10 * time.Millisecond)
	}

	if exitCode == 0 {
		version, schematic := parseInstaller(image)

		c.mu.Lock()
		if n.gen == gen {
			n.pendingVer, n.pendingSch = version, schematic
		}
		c.mu.Unlock()

		log.Printf("%s: upgrade to %s installed, boots on the next reboot", n.name, version)
	}

	// The exit code is the answer, never a gRPC error (the client judges it).
	return send(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_ExitCode{ExitCode: exitCode}})
}

// imageService is Talos 1.13's machine.ImageService Pull (internal/app/images).
type imageService struct {
	machineapi.UnimplementedImageServiceServer

	n *Node
}

func (s *imageService) Pull(req *machineapi.ImageServicePullRequest, ss grpc.ServerStreamingServer[machineapi.ImageServicePullResponse]) error {
	n := s.n
	c := n.c
	ref := req.GetImageRef()

	c.mu.Lock()
	pullErr := n.spec.Upgrade.PullError
	broken := n.pullBroken()
	c.mu.Unlock()

	if pullErr != "" && isInstaller(ref) {
		return status.Errorf(codes.NotFound, "error pulling image: %s", pullErr)
	}

	if broken {
		return errPullBroken
	}

	digest := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(ref)))

	if err := ss.Send(&machineapi.ImageServicePullResponse{Response: &machineapi.ImageServicePullResponse_PullProgress{PullProgress: &machineapi.ImageServicePullProgress{
		LayerId: digest[:19],
		Progress: &machineapi.ImageServicePullLayerProgress{
			Status:  machineapi.ImageServicePullLayerProgress_DOWNLOAD_COMPLETE,
			Elapsed: durationpb.New(20 * time.Millisecond),
			Offset:  1 << 20,
			Total:   1 << 20,
		},
	}}}); err != nil {
		return err
	}

	c.mu.Lock()
	n.pulled[containerd(req.GetContainerd())+"/"+ref] = true
	c.mu.Unlock()

	// A tag reference comes back pinned to the digest pulled.
	return ss.Send(&machineapi.ImageServicePullResponse{Response: &machineapi.ImageServicePullResponse_Name{Name: ref + "@" + digest}})
}

func caFrom(crt, key []byte) (*x509.CertificateAuthority, error) {
	return x509.NewCertificateAuthorityFromCertificateAndKey(&x509.PEMEncodedCertificateAndKey{Crt: crt, Key: key})
}
