// Command talos-check generates and validates Talos machine configs with Talos's own machinery.
//
// It is built twice from this folder: against machinery v1.13.0 (go.mod), the version
// terraform-provider-talos v0.11.0 (pulumiverse-talos 0.8.1) generates configs with, and
// against v1.14.1 (node.go.mod), the newest version the nodes run. The same calls serve both:
// v1.14.1 keeps Validate and RuntimeValidate, which its ValidateAtRuntime (what a 1.14 node's
// ApplyConfiguration calls: v1alpha1_server.go:232 at v1.14.0-rc.1) joins
// (config/container/validate.go:38-56, 363-372 at machinery v1.14.1). The request comes as JSON on
// stdin and the answer goes as JSON to stdout, so one process checks a whole batch.
//
//	{"mode": "generate", "machines": [{"name", "clusterName", "clusterEndpoint", "machineType",
//	  "kubernetesVersion", "talosVersion", "configPatches", "docs", "examples"}]}
//	{"mode": "node", "machines": [{"name", "config"}]}
//	{"mode": "compat", "pairs": [{"talos", "host", "kubernetes"}]}
//	{"mode": "match", "machines": [{"name", "config", "disks": [block.DiskSpec...]}]}
//
// "generate" does what the provider's talos_machine_configuration data source does (its plan-time
// checks, then generate() with a secrets bundle made as talos_machine_secrets makes it) and then
// validates the result as a node would; "node" only loads and validates a config, as a node of
// this build's version receives it. Each result lists errors and warnings separately; the caller
// treats both as failures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	sideronet "github.com/siderolabs/net"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/bundle"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/block/blockhelpers"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/gendata"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
)

// Machine is one getConfiguration invocation's arguments (generate mode) or a config (node mode).
type Machine struct {
	Name              string   `json:"name"`
	ClusterName       string   `json:"clusterName"`
	ClusterEndpoint   string   `json:"clusterEndpoint"`
	MachineType       string   `json:"machineType"`
	KubernetesVersion string   `json:"kubernetesVersion"`
	TalosVersion      string   `json:"talosVersion"`
	ConfigPatches     []string `json:"configPatches"`
	Docs              bool     `json:"docs"`
	Examples          bool     `json:"examples"`
	Config            string   `json:"config"`
	// Disks: the machine's block.Disks, as a machine in maintenance mode lists them (match mode).
	Disks []block.DiskSpec `json:"disks,omitempty"`
}

// Request is the whole batch read from stdin.
type Request struct {
	Mode     string    `json:"mode"`
	Machines []Machine `json:"machines"`
	Pairs    []Pair    `json:"pairs"`
}

// Pair is one compatibility question (compat mode).
type Pair struct {
	Talos      string `json:"talos"`
	Host       string `json:"host"`
	Kubernetes string `json:"kubernetes"`
}

// Compat is the answer to one Pair: machinery's error for each question, or "".
type Compat struct {
	Upgrade    string `json:"upgrade"`
	Kubernetes string `json:"kubernetes"`
}

// Result is one machine's verdict.
type Result struct {
	Name     string   `json:"name"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
	Config   string   `json:"config,omitempty"`
	// Matched: the dev paths of the disks the config's install disk selector matches, in the machine's order:
	// Talos installs to the first (match mode).
	Matched []string `json:"matched,omitempty"`
}

// Response is the whole answer written to stdout.
type Response struct {
	Machinery string   `json:"machinery"`
	Results   []Result `json:"results"`
	Compat    []Compat `json:"compat,omitempty"`
}

func errText(err error) string {
	if err == nil {
		return ""
	}

	return err.Error()
}

// compat answers each pair with machinery's own compatibility rules.
func compat(pairs []Pair) ([]Compat, error) {
	out := make([]Compat, 0, len(pairs))

	for _, p := range pairs {
		talos, err := compatibility.ParseTalosVersion(&machineapi.VersionInfo{Tag: p.Talos})
		if err != nil {
			return nil, fmt.Errorf("talos %q: %w", p.Talos, err)
		}

		var c Compat

		if p.Host != "" {
			host, err := compatibility.ParseTalosVersion(&machineapi.VersionInfo{Tag: p.Host})
			if err != nil {
				return nil, fmt.Errorf("host %q: %w", p.Host, err)
			}

			c.Upgrade = errText(talos.UpgradeableFrom(host))
		}

		if p.Kubernetes != "" {
			k8s, err := compatibility.ParseKubernetesVersion(p.Kubernetes)
			if err != nil {
				return nil, fmt.Errorf("kubernetes %q: %w", p.Kubernetes, err)
			}

			c.Kubernetes = errText(k8s.SupportedWith(talos))
		}

		out = append(out, c)
	}

	return out, nil
}

// metal is Talos's metal runtime mode (machined's runtime.ModeMetal): installs to disk, not a container.
type metal struct{ matchDisks bool }

func (metal) String() string          { return "metal" }
func (m metal) RequiresInstall() bool { return m.matchDisks }
func (metal) InContainer() bool       { return false }

func (r *Result) fail(stage string, err error) {
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("%s: %s", stage, strings.TrimSpace(err.Error())))
	}
}

func (r *Result) warn(stage string, warnings []string) {
	for _, w := range warnings {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s", stage, w))
	}
}

// planChecks are the data source's ValidateConfig (terraform-provider-talos v0.11.0
// pkg/talos/talos_machine_configuration_data_source.go:215-275): the machine type, the endpoint, and the patches
// parse. It does not ask whether the Talos version runs the Kubernetes version (nothing in v0.11.0 calls
// compatibility's SupportedWith): machinery v1.13.0 knows no Talos 1.14 and would refuse every 1.14 pair, which the
// provider does not. Iluvatar's own rules decide that (stacks.releases, read from machinery v1.14.1's tables), and
// the versions must still parse, as generate() parses them (util.go:67, validateVersionContract).
func planChecks(m Machine) error {
	var errs []error

	if m.MachineType != "controlplane" && m.MachineType != "worker" {
		errs = append(errs, fmt.Errorf("machine_type %q is not one of controlplane, worker", m.MachineType))
	}

	if err := clusterEndpoint(m.ClusterEndpoint); err != nil {
		errs = append(errs, fmt.Errorf("cluster_endpoint is invalid: %w", err))
	}

	if _, err := configpatcher.LoadPatches(m.ConfigPatches); err != nil {
		errs = append(errs, fmt.Errorf("config_patches are invalid: %w", err))
	}

	if _, err := compatibility.ParseKubernetesVersion(strings.TrimPrefix(m.KubernetesVersion, "v")); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes_version is invalid: %w", err))
	}

	if _, err := config.ParseContractFromVersion(m.TalosVersion); err != nil {
		errs = append(errs, fmt.Errorf("talos_version is invalid: %w", err))
	}

	return errors.Join(errs...)
}

// clusterEndpoint is the provider's endpoint check: an https:// URL that Talos's URI check accepts.
func clusterEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		if strings.Contains(endpoint, "/") {
			return fmt.Errorf("failed to parse the cluster endpoint URL: %w", err)
		}

		u = &url.URL{Host: endpoint}
	}

	switch {
	case u.Scheme == "" && u.Port() == "":
		return errors.New("no scheme and port specified for the cluster endpoint URL")
	case u.Scheme == "":
		return errors.New("no scheme specified for the cluster endpoint URL")
	case u.Scheme != "https":
		return errors.New("the control plane endpoint URL should have scheme https://")
	}

	if err := sideronet.ValidateEndpointURI(endpoint); err != nil {
		return fmt.Errorf("error validating the cluster endpoint URL: %w", err)
	}

	return nil
}

// clusterSecrets is what talos_machine_secrets creates for a talos_version, as the machine
// configuration data source reads it back from state (the same fields, a fresh fixed clock).
func clusterSecrets(talosVersion string) (*secrets.Bundle, error) {
	contract, err := config.ParseContractFromVersion(talosVersion)
	if err != nil {
		return nil, err
	}

	made, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		return nil, err
	}

	read := &secrets.Bundle{
		Clock:      secrets.NewFixedClock(time.Now()),
		Cluster:    &secrets.Cluster{ID: made.Cluster.ID, Secret: made.Cluster.Secret},
		Secrets:    &secrets.Secrets{BootstrapToken: made.Secrets.BootstrapToken, SecretboxEncryptionSecret: made.Secrets.SecretboxEncryptionSecret},
		TrustdInfo: &secrets.TrustdInfo{Token: made.TrustdInfo.Token},
		Certs: &secrets.Certs{
			Etcd:              made.Certs.Etcd,
			K8s:               made.Certs.K8s,
			K8sAggregator:     made.Certs.K8sAggregator,
			K8sServiceAccount: made.Certs.K8sServiceAccount,
			OS:                made.Certs.OS,
		},
	}

	if made.Secrets.AESCBCEncryptionSecret != "" {
		read.Secrets.AESCBCEncryptionSecret = made.Secrets.AESCBCEncryptionSecret
	}

	return read, nil
}

// generateConfig is the provider's generate(): the same options in the same order.
func generateConfig(m Machine, bundleSecrets *secrets.Bundle) ([]byte, error) {
	contract, err := config.ParseContractFromVersion(m.TalosVersion)
	if err != nil {
		return nil, err
	}

	genOptions := []generate.Option{
		generate.WithClusterDiscovery(true),
		generate.WithDNSDomain(constants.DefaultDNSDomain),
		generate.WithInstallDisk("/dev/sda"),
		generate.WithInstallImage(fmt.Sprintf("%s/%s/installer:%s", gendata.ImagesRegistry, gendata.ImagesUsername, gendata.VersionTag)),
		generate.WithSecretsBundle(bundleSecrets),
		generate.WithVersionContract(contract),
	}

	comments := encoder.CommentsDisabled
	if m.Docs {
		comments |= encoder.CommentsDocs
	}

	if m.Examples {
		comments |= encoder.CommentsExamples
	}

	opts := []bundle.Option{
		bundle.WithInputOptions(&bundle.InputOptions{
			ClusterName: m.ClusterName,
			Endpoint:    m.ClusterEndpoint,
			KubeVersion: strings.TrimPrefix(m.KubernetesVersion, "v"),
			GenOptions:  genOptions,
		}),
		bundle.WithVerbose(false),
	}

	patches, err := configpatcher.LoadPatches(m.ConfigPatches)
	if err != nil {
		return nil, fmt.Errorf("error parsing config patch: %w", err)
	}

	machineType := machine.TypeWorker
	if m.MachineType == "controlplane" {
		machineType = machine.TypeControlPlane
		opts = append(opts, bundle.WithPatchControlPlane(patches))
	} else {
		opts = append(opts, bundle.WithPatchWorker(patches))
	}

	generated, err := bundle.NewBundle(opts...)
	if err != nil {
		return nil, err
	}

	return generated.Serialize(comments, machineType)
}

// validateAsNode checks a config the way a node of this machinery's version does on apply
// (maintenance-mode ApplyConfiguration: load, Validate, RuntimeValidate) and the way
// `talosctl validate --mode metal --strict` does (Validate with local and strict options).
func validateAsNode(raw []byte, r *Result) {
	cfg, err := configloader.NewFromBytes(raw)
	if err != nil {
		r.fail("load", err)

		return
	}

	warnings, err := cfg.Validate(metal{matchDisks: true})
	r.warn("validate (node apply, metal)", warnings)
	r.fail("validate (node apply, metal)", err)

	warnings, err = cfg.Validate(metal{matchDisks: true}, validation.WithLocal(), validation.WithStrict())
	r.warn("validate (talosctl validate --mode metal --strict)", warnings)
	r.fail("validate (talosctl validate --mode metal --strict)", err)

	// RuntimeValidate also matches an install disk selector against the machine's disks, which
	// only the machine has; the selector itself is compiled by Validate above. The rest (image
	// tags supported by this Talos version, deprecated install fields) runs on an empty state.
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	warnings, err = cfg.RuntimeValidate(context.Background(), st, metal{matchDisks: false})
	r.warn("runtime validate (node apply, metal)", warnings)
	r.fail("runtime validate (node apply, metal)", err)
}

// matchDisks is what a node does with an install disk selector (internal/app/machined/pkg/runtime/v1alpha1/
// v1alpha1_sequencer_tasks.go:1504-1522 at v1.12.4): the config's DiskMatchExpression (the selector as CEL,
// config/types/v1alpha1/v1alpha1_provider.go:1248-1380) evaluated by blockhelpers.MatchDisks over the machine's
// block.Disks, Talos installing to the first match; and the config's RuntimeValidate with disks to match, as the
// machine validates a config applied to it in maintenance mode.
func matchDisks(m Machine, r *Result) {
	cfg, err := configloader.NewFromBytes([]byte(m.Config))
	if err != nil {
		r.fail("load", err)

		return
	}

	st := state.WrapCore(namespaced.NewState(inmem.Build))

	for _, spec := range m.Disks {
		// Talos's DisksController names each Disk by its kernel name (sda, nvme0n1), the order MatchDisks lists them in.
		d := block.NewDisk(block.NamespaceName, strings.TrimPrefix(spec.DevPath, "/dev/"))
		*d.TypedSpec() = spec

		if err = st.Create(context.Background(), d); err != nil {
			r.fail("disks", err)

			return
		}
	}

	expr, err := cfg.Machine().Install().DiskMatchExpression()
	if err != nil || expr == nil {
		r.fail("selector", fmt.Errorf("no install disk selector: %v", err))

		return
	}

	matched, err := blockhelpers.MatchDisks(context.Background(), st, expr)
	if err != nil {
		r.fail("match", err)

		return
	}

	r.Matched = []string{}
	for _, d := range matched {
		r.Matched = append(r.Matched, d.TypedSpec().DevPath)
	}

	warnings, err := cfg.RuntimeValidate(context.Background(), st, metal{matchDisks: true})
	r.warn("runtime validate (node apply, metal, its disks)", warnings)
	r.fail("runtime validate (node apply, metal, its disks)", err)
}

func run(req Request) (Response, error) {
	resp := Response{Machinery: gendata.VersionTag, Results: make([]Result, 0, len(req.Machines))}

	if req.Mode == "compat" {
		answers, err := compat(req.Pairs)
		resp.Compat = answers

		return resp, err
	}
	// One cluster, one secrets bundle, as the program's single talos_machine_secrets resource.
	bundles := map[string]*secrets.Bundle{}

	for _, m := range req.Machines {
		r := Result{Name: m.Name, Errors: []string{}, Warnings: []string{}}

		switch req.Mode {
		case "node":
			validateAsNode([]byte(m.Config), &r)
		case "match":
			matchDisks(m, &r)
		case "generate":
			if err := planChecks(m); err != nil {
				r.fail("plan", err)
				resp.Results = append(resp.Results, r)

				continue
			}

			key := m.ClusterName + "\x00" + m.TalosVersion
			if bundles[key] == nil {
				b, err := clusterSecrets(m.TalosVersion)
				if err != nil {
					r.fail("secrets", err)
					resp.Results = append(resp.Results, r)

					continue
				}

				bundles[key] = b
			}

			raw, err := generateConfig(m, bundles[key])
			if err != nil {
				r.fail("generate", err)
				resp.Results = append(resp.Results, r)

				continue
			}

			r.Config = string(raw)
			validateAsNode(raw, &r)
		default:
			return resp, fmt.Errorf("mode %q is not one of generate, node, match", req.Mode)
		}

		resp.Results = append(resp.Results, r)
	}

	return resp, nil
}

func main() {
	var req Request

	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()

	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "talos-check: reading the request: %s\n", err)
		os.Exit(2)
	}

	resp, err := run(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "talos-check: %s\n", err)
		os.Exit(2)
	}

	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		fmt.Fprintf(os.Stderr, "talos-check: writing the answer: %s\n", err)
		os.Exit(2)
	}
}
