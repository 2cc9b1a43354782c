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

// Upgrade follows Talos v1.13.0's Service.Upgrade and runInstallerContainer:
//   - one installer at a time: the service's lock, taken with TryLock and held until the installer has
//     ended (internal/app/lifecycle/lifecycle.go:156-159), else FailedPrecondition;
//   - the installer starts on the stream's context (container.go:165, task.Start(ctx)): a stream already
//     gone starts nothing;
//   - once started it is waited for on a detached context (container.go:181, task.Wait(detachedCtx);
//     ctrhelper.go:24 "detached (context.Background())"): a stream cancelled or broken afterwards only
//     stops the output (streamOutput returns on the failed Send, container.go:186-197), and the
//     installer runs to its end, its new Talos then the next boot's (sd-boot's default entry,
//     bootloader/sdboot/sdboot.go:399-400) with no reboot;
//   - the exit code is the answer, never a gRPC error (container.go:211-214).
//
// Not modelled: a real installer whose output fills the pipe no one reads any more would block on it
// (io.Pipe, container.go:125); Talos's installer writes a few kilobytes, which the FIFO takes.
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

	if err := ss.Context().Err(); err != nil { // task.Start(ctx): nothing started
		c.mu.Unlock()

		return status.FromContextError(err).Err()
	}

	n.upgrading = true
	gen := n.gen
	exitCode := n.spec.Upgrade.ExitCode
	installFor := time.Duration(n.spec.Upgrade.InstallMs) * time.Millisecond

	// A held installer (a test control: scenario.go, UpgradeOutcome.Held) ends only once the test released it.
	var release chan struct{}
	if n.spec.Upgrade.Held {
		release = make(chan struct{})
		n.installRelease = release
	}
	c.mu.Unlock()

	// The installer, started: it runs to its end on its own, whatever the stream does.
	ended := make(chan int32, 1)

	go func() {
		time.Sleep(20*time.Millisecond + installFor)

		if release != nil {
			<-release
		}

		version, schematic := parseInstaller(image)

		c.mu.Lock()
		if exitCode == 0 && n.gen == gen {
			n.pendingVer, n.pendingSch = version, schematic

			log.Printf("%s: upgrade to %s installed, boots on the next reboot", n.name, version)
		}
		n.upgrading = false // the lock, released once runInstallerContainer returns
		c.mu.Unlock()

		ended <- exitCode
	}()

	send := func(p *machineapi.LifecycleServiceInstallProgress) error {
		return ss.Send(&machineapi.LifecycleServiceUpgradeResponse{Progress: p})
	}

	// The output, while the stream takes it; a failed Send stops the output only.
	for _, msg := range []string{"running the installer from " + image, "installing the bootloader and the new Talos image"} {
		if err := send(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_Message{Message: msg}}); err != nil {
			break
		}

		time.Sleep(10 * time.Millisecond)
	}

	code := <-ended

	return send(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_ExitCode{ExitCode: code}})
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
