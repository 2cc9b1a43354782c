// Command stackfile prints what Pulumi writes back to a stack file (Pulumi.<stack>.yaml), computed
// by Pulumi's own code: the stack-file loader's steps and ProjectStack.Save, whose YAML marshaler
// (sdk/go/common/encoding, yamlutil.Edit on gopkg.in/yaml.v3) keeps the original file's key order,
// comments and styles and re-encodes everything else with a two-space indent.
//
//	stackfile init FILE                     what `pulumi stack init` (passphrase secrets) writes
//	stackfile set FILE KEY VALUE [--path]   what `pulumi config set [--path] KEY VALUE` writes
//	stackfile secret FILE KEY CIPHERTEXT    what `pulumi config set --secret KEY ...` writes
//
// The result goes to stdout; FILE is never changed. Pulumi's workspace package itself cannot be
// built from the Go module proxy (one of its dependencies is not served), so the few lines of
// LoadProjectStackBytes it needs are repeated here, and the ProjectStack struct is its field list.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/encoding"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"gopkg.in/yaml.v3"
)

// projectStack is workspace.ProjectStack's serialised form, field for field and in the same order
// (the order decides where a new top-level key such as encryptionsalt lands).
type projectStack struct {
	SecretsProvider string     `yaml:"secretsprovider,omitempty"`
	EncryptedKey    string     `yaml:"encryptedkey,omitempty"`
	EncryptionSalt  string     `yaml:"encryptionsalt,omitempty"`
	Config          config.Map `yaml:"config,omitempty"`
	Environment     *yaml.Node `yaml:"environment,omitempty"`
	MainEnvironment string     `yaml:"mainEnvironment,omitempty"`
	raw             []byte
}

// RawValue makes Pulumi's YAML marshaler edit the original bytes (yamlutil.HasRawValue), as it does
// for every stack file it loaded.
func (ps projectStack) RawValue() []byte { return ps.raw }

// A salt of the shape the passphrase secrets manager writes (v1:<salt>:<encrypted check phrase>).
const salt = "v1:c2FsdHNhbHQ=:v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHRjaXBoZXJ0ZXh0"

func load(path, project string) (*projectStack, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // readFileStripUTF8BOM
	var raw map[string]any
	if err := encoding.YAML.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	// stackConfigNamespacedWithProject: a key without a namespace belongs to the project.
	if cfg, ok := raw["config"].(map[string]any); ok {
		namespaced := make(map[string]any, len(cfg))
		for k, v := range cfg {
			if !strings.Contains(k, ":") {
				k = project + ":" + k
			}
			namespaced[k] = v
		}
		raw["config"] = namespaced
	}
	rewritten, err := encoding.YAML.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var ps projectStack
	if err := encoding.YAML.Unmarshal(rewritten, &ps); err != nil {
		return nil, err
	}
	if ps.Config == nil {
		ps.Config = make(config.Map)
	}
	ps.raw = b
	return &ps, nil
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: stackfile init FILE | set FILE KEY VALUE [--path] | secret FILE KEY CIPHERTEXT")
	}
	ps, err := load(args[1], "iluvatar")
	if err != nil {
		return fmt.Errorf("%s: %w", args[1], err)
	}
	switch {
	case args[0] == "init" && len(args) == 2:
		if ps.EncryptionSalt == "" {
			ps.EncryptionSalt = salt
		}
	case args[0] == "set" && (len(args) == 4 || len(args) == 5 && args[4] == "--path"):
		key, err := config.ParseKey(args[2])
		if err != nil {
			return err
		}
		if err := ps.Config.Set(key, config.NewTypedValue(args[3], config.TypeUnknown), len(args) == 5); err != nil {
			return fmt.Errorf("could not set config: %w", err)
		}
	case args[0] == "secret" && len(args) == 4:
		key, err := config.ParseKey(args[2])
		if err != nil {
			return err
		}
		if err := ps.Config.Set(key, config.NewSecureValue(args[3]), false); err != nil {
			return fmt.Errorf("could not set config: %w", err)
		}
	default:
		return fmt.Errorf("unknown command %q", strings.Join(args, " "))
	}
	out, err := encoding.YAML.Marshal(ps) // ProjectStack.Save's marshaling, without the write
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stackfile:", err)
		os.Exit(1)
	}
}
