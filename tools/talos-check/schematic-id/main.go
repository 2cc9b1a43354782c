// Command schematic-id names each schematic as a `pulumi up` gets it named: through the Talos provider's
// own steps and Image Factory's own code.
//
// terraform-provider-talos v0.11.0 (pulumiverse-talos 0.8.1) does not send the program's text: its
// talos_image_factory_schematic Create decodes it with yaml.Unmarshal into image-factory's
// schematic.Schematic (pkg/talos/talos_image_factory_schematic_resource.go:95, unknown fields dropped)
// and hands the struct to image-factory's client, whose SchematicCreate POSTs the struct's own
// Marshal to /schematics (pkg/client/client.go:67) and returns the ID the factory answers, which the
// provider stores (resource.go:108). Image Factory v1.1.0's handleSchematicCreate decodes that body
// with schematic.Unmarshal (KnownFields) and its Factory.Put answers the schematic's ID()
// (internal/frontend/http/configuration.go:31, internal/schematic/schematic.go:62).
//
// This runs the provider's decode (yaml.Unmarshal, go.yaml.in/yaml/v4 as the provider pins it), the
// real client (pkg/client), and, behind a local HTTP server standing in for the factory, the
// factory's two calls (pkg/schematic Unmarshal and ID). image-factory v1.1.0 is not served by the Go
// module proxy; v1.0.3's pkg/schematic and pkg/client are the same files (git blob 84c144c3 for
// schematic.go), and this module selects the yaml v4 (v4.0.0-rc.4) and machinery (imageropts)
// versions image-factory v1.1.0 builds with.
//
// Request on stdin: {"schematics": ["<yaml>", ...]}. Answer on stdout: the module versions, then for
// each schematic the body POSTed and the factory's ID, or the error and the step that refused it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"sync"

	"github.com/siderolabs/image-factory/pkg/client"
	"github.com/siderolabs/image-factory/pkg/schematic"
	"go.yaml.in/yaml/v4"
)

// Request is the batch read from stdin.
type Request struct {
	Schematics []string `json:"schematics"`
}

// Result is one schematic's fate: the POSTed body and the factory's ID, or where it was refused.
type Result struct {
	Body  string `json:"body,omitempty"`
	ID    string `json:"id,omitempty"`
	Stage string `json:"stage,omitempty"` // "provider" (its yaml.Unmarshal), "client" (nothing POSTed) or "factory" (POST refused)
	Error string `json:"error,omitempty"`
}

// Response is the whole answer written to stdout.
type Response struct {
	Modules map[string]string `json:"modules"`
	Results []Result          `json:"results"`
}

// factory stands in for Image Factory's POST /schematics: handleSchematicCreate's schematic.Unmarshal,
// then Factory.Put's ID(), answered as {"id": ...} with 201 (the real storage and metrics left out).
type factory struct {
	mu   sync.Mutex
	body []byte
}

func (f *factory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)

		return
	}

	f.mu.Lock()
	f.body = data
	f.mu.Unlock()

	if r.Method != http.MethodPost || r.URL.Path != "/schematics" {
		http.Error(w, "not found", http.StatusNotFound)

		return
	}

	cfg, err := schematic.Unmarshal(data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	id, err := cfg.ID()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)

		return
	}

	w.Header().Add("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)

	if err := json.NewEncoder(w).Encode(struct {
		ID string `json:"id"`
	}{ID: id}); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func modules() map[string]string {
	found := map[string]string{}

	info, ok := debug.ReadBuildInfo()
	if !ok {
		return found
	}

	for _, dep := range info.Deps {
		switch dep.Path {
		case "github.com/siderolabs/image-factory", "go.yaml.in/yaml/v4", "github.com/siderolabs/talos/pkg/machinery":
			found[dep.Path] = dep.Version
		}
	}

	return found
}

func run(req Request) (Response, error) {
	stand := &factory{}
	server := httptest.NewServer(stand)

	defer server.Close()

	c, err := client.New(server.URL)
	if err != nil {
		return Response{}, err
	}

	resp := Response{Modules: modules(), Results: make([]Result, 0, len(req.Schematics))}

	for _, text := range req.Schematics {
		// The provider's Create: yaml.Unmarshal into the struct, then the client's SchematicCreate.
		var s schematic.Schematic

		if err := yaml.Unmarshal([]byte(text), &s); err != nil {
			resp.Results = append(resp.Results, Result{Stage: "provider", Error: err.Error()})

			continue
		}

		stand.mu.Lock()
		stand.body = nil
		stand.mu.Unlock()

		id, err := c.SchematicCreate(context.Background(), s)

		stand.mu.Lock()
		body := string(stand.body)
		stand.mu.Unlock()

		switch {
		case err != nil && body == "":
			resp.Results = append(resp.Results, Result{Stage: "client", Error: err.Error()})
		case err != nil:
			resp.Results = append(resp.Results, Result{Body: body, Stage: "factory", Error: err.Error()})
		default:
			resp.Results = append(resp.Results, Result{Body: body, ID: id})
		}
	}

	return resp, nil
}

func main() {
	var req Request

	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()

	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "schematic-id: reading the request: %s\n", err)
		os.Exit(2)
	}

	resp, err := run(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "schematic-id: %s\n", err)
		os.Exit(2)
	}

	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		fmt.Fprintf(os.Stderr, "schematic-id: writing the answer: %s\n", err)
		os.Exit(2)
	}
}
