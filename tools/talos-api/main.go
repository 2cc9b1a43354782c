// Command talos-api is a scripted Talos API stand-in: fake Talos nodes, each on its own loopback
// address, serving machinery's real gRPC services (machine.MachineService, machine.LifecycleService,
// machine.ImageService and the COSI state service) with the semantics and status codes of the
// Talos source, and the behaviour a test scripts (versions, maintenance mode, etcd, what a reboot
// or an upgrade does). It records every call so tests can assert exact sequences.
//
//	talos-api serve --scenario FILE --dir DIR
//	    Serves the scenario. DIR gets secrets.yaml (a real Talos secrets bundle, kept if present; its
//	    service-account key ECDSA: bundleContract),
//	    talosconfig (the admin client config), configs/NAME.yaml (each configured node's config) and,
//	    once every node is listening, ready.json ({"control": URL, "nodes": {NAME: ADDRESS}}).
//	    The control URL (loopback HTTP) answers GET /calls, GET /nodes, POST /nodes/NAME (a partial
//	    node script merged into the running one), POST /nodes/NAME/crash (an Outcome: the node
//	    drops off at once), POST /nodes/NAME/kubelet-restart (its kubelet restarts), GET /etcd
//	    (bootstrapped, members), GET /etcd/clusters (every etcd cluster a data directory holds: its
//	    members and holders; two are a split etcd) and POST /etcd ({"alarms": [...]}, the raised
//	    alarms replaced). SIGTERM stops it.
//	talos-api config --dir DIR --scenario FILE --type controlplane|worker --install-image IMAGE [--kubernetes-version V] [--patch YAML]...
//	    Prints a machine config generated with DIR's secrets, as the nodes' own configs are.
//	talos-api kubeconfig --talosconfig FILE --node IP
//	    Prints the admin kubeconfig a node's MachineService.Kubeconfig hands out, fetched with
//	    machinery's client as the Talos provider and `talosctl kubeconfig` fetch it.
//	talos-api bootstrap --talosconfig FILE --node IP
//	    One MachineService.Bootstrap call, as `talosctl bootstrap` makes it; prints "CODE: message".
//	talos-api resource --node IP:PORT [--talosconfig FILE] --verb list|get|create --type TYPE [--namespace NS] [--id ID]
//	    One resource API call, insecure as `talosctl get --insecure` without --talosconfig; prints "OK N" or "CODE: message".
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/siderolabs/crypto/x509"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/bundle"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"go.yaml.in/yaml/v4"
)

func main() {
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("talos-api: ")

	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: talos-api serve|config|kubeconfig|bootstrap|resource ...")
		os.Exit(2)
	}

	var err error

	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "config":
		err = printConfig(os.Args[2:])
	case "kubeconfig":
		err = printKubeconfig(os.Args[2:])
	case "bootstrap":
		err = printBootstrap(os.Args[2:])
	case "resource":
		err = printResource(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (serve, config, kubeconfig, bootstrap, resource)", os.Args[1])
	}

	if err != nil {
		log.Printf("error: %s", err)
		os.Exit(1)
	}
}

// loadOrCreateSecrets reuses DIR's bundle, or makes one as talos_machine_secrets does (with the
// scenario's Kubernetes CA, if it names one).
func loadOrCreateSecrets(dir string, cluster ClusterSpec) (*secrets.Bundle, error) {
	path := filepath.Join(dir, "secrets.yaml")

	if _, err := os.Stat(path); err == nil {
		return secrets.LoadBundle(path)
	}

	contract, err := coreconfig.ParseContractFromVersion(cluster.ConfigVersion)
	if err != nil {
		return nil, err
	}

	b, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), bundleContract(contract))
	if err != nil {
		return nil, err
	}

	if ca := cluster.KubernetesCA; ca != nil {
		b.Certs.K8s = &x509.PEMEncodedCertificateAndKey{Crt: []byte(ca.Crt), Key: []byte(ca.Key)}
	}

	out, err := yaml.Marshal(b)
	if err != nil {
		return nil, err
	}

	return b, writeFile(path, out, 0o600)
}

// bundleContract is the contract the scenario's bundle is made for: the scenario's own, except that
// its Kubernetes service-account key is ECDSA, as Talos 1.6 and older made it (clusters they made
// keep it through every upgrade), not the RSA-4096 key newer contracts make. That key is the only
// difference (secrets.Bundle.populate: UseRSAServiceAccountKey). Nothing here serves Kubernetes, so
// the key is never used, and an RSA-4096 key took 0.2 to 0.7 s of CPU per scenario: nearly all of
// this program's cost in a test run (about 45 s over the suite's ~110 scenarios).
func bundleContract(contract *coreconfig.VersionContract) *coreconfig.VersionContract {
	if contract.UseRSAServiceAccountKey() {
		return coreconfig.TalosVersion1_6
	}

	return contract
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}

	return os.Rename(tmp, path)
}

// generateConfig is a machine config as the Talos provider generates one, with our patches.
func generateConfig(sc *Scenario, b *secrets.Bundle, machineType, image, kubernetesVersion string, patches []string) ([]byte, error) {
	contract, err := coreconfig.ParseContractFromVersion(sc.Cluster.ConfigVersion)
	if err != nil {
		return nil, err
	}

	loaded, err := configpatcher.LoadPatches(patches)
	if err != nil {
		return nil, fmt.Errorf("patches: %w", err)
	}

	opts := []bundle.Option{
		bundle.WithInputOptions(&bundle.InputOptions{
			ClusterName: sc.Cluster.Name,
			Endpoint:    sc.Cluster.Endpoint,
			KubeVersion: strings.TrimPrefix(kubernetesVersion, "v"),
			GenOptions: []generate.Option{
				generate.WithSecretsBundle(b),
				generate.WithVersionContract(contract),
				generate.WithInstallDisk("/dev/sda"),
				generate.WithInstallImage(image),
				generate.WithDNSDomain(constants.DefaultDNSDomain),
			},
		}),
		bundle.WithVerbose(false),
	}

	t := machine.TypeWorker
	if machineType == "controlplane" {
		t = machine.TypeControlPlane
		opts = append(opts, bundle.WithPatchControlPlane(loaded))
	} else {
		opts = append(opts, bundle.WithPatchWorker(loaded))
	}

	generated, err := bundle.NewBundle(opts...)
	if err != nil {
		return nil, err
	}

	return generated.Serialize(encoder.CommentsDisabled, t)
}

func nodeConfig(sc *Scenario, b *secrets.Bundle, role, image string) (coreconfig.Provider, error) {
	raw, err := generateConfig(sc, b, role, image, sc.Cluster.KubernetesVersion, nil)
	if err != nil {
		return nil, err
	}

	return loadConfig(raw)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func printConfig(args []string) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	dir := fs.String("dir", "", "the serve folder (its secrets.yaml)")
	scenario := fs.String("scenario", "", "the scenario (its cluster)")
	machineType := fs.String("type", "", "controlplane or worker")
	image := fs.String("install-image", "", "machine.install.image")
	kube := fs.String("kubernetes-version", "", "Kubernetes version (default: the scenario's)")

	var patches stringList

	fs.Var(&patches, "patch", "a config patch (YAML), repeatable")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *dir == "" || *scenario == "" || *image == "" || (*machineType != "controlplane" && *machineType != "worker") {
		return errors.New("config needs --dir, --scenario, --type controlplane|worker and --install-image")
	}

	sc, err := loadScenario(*scenario)
	if err != nil {
		return err
	}

	b, err := secrets.LoadBundle(filepath.Join(*dir, "secrets.yaml"))
	if err != nil {
		return err
	}

	if *kube == "" {
		*kube = sc.Cluster.KubernetesVersion
	}

	raw, err := generateConfig(sc, b, *machineType, *image, *kube, patches)
	if err != nil {
		return err
	}

	_, err = os.Stdout.Write(raw)

	return err
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	scenarioPath := fs.String("scenario", "", "the scenario JSON")
	dir := fs.String("dir", "", "a folder for secrets, talosconfig, configs and ready.json")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *scenarioPath == "" || *dir == "" {
		return errors.New("serve needs --scenario and --dir")
	}

	sc, err := loadScenario(*scenarioPath)
	if err != nil {
		return err
	}

	b, err := loadOrCreateSecrets(*dir, sc.Cluster)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}

	c, err := newCluster(sc, b)
	if err != nil {
		return err
	}

	if err := writeClientFiles(*dir, sc, b, c); err != nil {
		return err
	}

	if err := c.start(); err != nil {
		return err
	}

	control, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}

	go http.Serve(control, c.controlHandler()) //nolint:errcheck

	ready := map[string]any{"control": "http://" + control.Addr().String(), "nodes": map[string]string{}}
	for _, n := range c.nodes {
		ready["nodes"].(map[string]string)[n.name] = n.spec.Address
	}

	out, _ := json.Marshal(ready) //nolint:errcheck
	if err := writeFile(filepath.Join(*dir, "ready.json"), out, 0o644); err != nil {
		return err
	}

	log.Printf("serving %d nodes; control %s", len(c.nodes), control.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig

	c.stop()
	log.Printf("stopped")

	return nil
}

// writeClientFiles writes the admin talosconfig (endpoints: the control planes) and each configured node's config.
func writeClientFiles(dir string, sc *Scenario, b *secrets.Bundle, c *Cluster) error {
	var endpoints []string

	for _, n := range c.nodes {
		if n.controlPlane() {
			endpoints = append(endpoints, n.spec.Address)
		}
	}

	in, err := generate.NewInput(sc.Cluster.Name, sc.Cluster.Endpoint, strings.TrimPrefix(sc.Cluster.KubernetesVersion, "v"),
		generate.WithSecretsBundle(b), generate.WithEndpointList(endpoints))
	if err != nil {
		return err
	}

	tc, err := in.Talosconfig()
	if err != nil {
		return err
	}

	raw, err := tc.Bytes()
	if err != nil {
		return err
	}

	if err := writeFile(filepath.Join(dir, "talosconfig"), raw, 0o600); err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Join(dir, "configs"), 0o700); err != nil {
		return err
	}

	for _, n := range c.nodes {
		if n.active == nil {
			continue
		}

		cfg, err := n.active.Bytes()
		if err != nil {
			return err
		}

		if err := writeFile(filepath.Join(dir, "configs", n.name+".yaml"), cfg, 0o600); err != nil {
			return err
		}
	}

	return nil
}
