// Command stackfile prints what Pulumi writes back to a stack file (Pulumi.<stack>.yaml), computed
// by Pulumi's own code: the stack-file loader's steps and ProjectStack.Save, whose YAML marshaler
// (sdk/go/common/encoding, yamlutil.Edit on gopkg.in/yaml.v3) keeps the original file's key order,
// comments and styles and re-encodes everything else with a two-space indent.
//
//	stackfile init FILE                     what `pulumi stack init` (passphrase secrets) writes
//	stackfile set FILE KEY VALUE [--path]   what `pulumi config set [--path] KEY VALUE` writes
//	stackfile secret FILE KEY CIPHERTEXT    what `pulumi config set --secret KEY ...` writes
//	stackfile init-passphrase FILE          `pulumi stack init` with a real passphrase salt ($PULUMI_CONFIG_PASSPHRASE)
//	stackfile encrypt FILE KEY VALUE [--path]  `pulumi config set --secret [--path] KEY VALUE`, encrypted for real
//	stackfile decrypt FILE                  what the engine makes of each secure value: `KEY: ok` or `KEY: <its error>`
//
// The result goes to stdout; FILE is never changed. Pulumi's workspace package itself cannot be
// built from the Go module proxy (one of its dependencies is not served), so the few lines of
// LoadProjectStackBytes it needs are repeated here, and the ProjectStack struct is its field list.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
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

// The passphrase secrets manager, as pkg/secrets/passphrase/manager.go (v3.259.0) makes and reads it; that package is not
// served by the module proxy, so its few lines are repeated. NewPassphraseSecretsManager: an 8-byte random salt, and
// the state `v1:<base64 salt>:<"pulumi" encrypted>`; symmetricCrypterFromPhraseAndState: the state split in three, the
// check phrase decrypted (else "incorrect passphrase"), then every value opened with config.NewSymmetricCrypter's
// DecryptValue (sdk/go/common/resource/config/crypt.go).
func newSalt(phrase string) (string, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	msg, err := config.NewSymmetricCrypterFromPassphrase(phrase, salt).EncryptValue(context.Background(), "pulumi")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("v1:%s:%s", base64.StdEncoding.EncodeToString(salt), msg), nil
}

func crypterFromState(phrase, state string) (config.Crypter, error) {
	splits := strings.SplitN(state, ":", 3)
	if len(splits) != 3 {
		return nil, errors.New("malformed state value")
	}
	if splits[0] != "v1" {
		return nil, errors.New("unknown state version")
	}
	salt, err := base64.StdEncoding.DecodeString(splits[1])
	if err != nil {
		return nil, err
	}
	crypter := config.NewSymmetricCrypterFromPassphrase(phrase, salt)
	if check, err := crypter.DecryptValue(context.Background(), splits[2]); err != nil || check != "pulumi" {
		return nil, errors.New("incorrect passphrase")
	}
	return crypter, nil
}

func passphrase() (string, error) {
	phrase, ok := os.LookupEnv("PULUMI_CONFIG_PASSPHRASE")
	if !ok {
		return "", errors.New("PULUMI_CONFIG_PASSPHRASE is not set")
	}
	return phrase, nil
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: stackfile init FILE | set FILE KEY VALUE [--path] | secret FILE KEY CIPHERTEXT | " +
			"init-passphrase FILE | encrypt FILE KEY VALUE [--path] | decrypt FILE")
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
	case args[0] == "init-passphrase" && len(args) == 2:
		phrase, err := passphrase()
		if err != nil {
			return err
		}
		if ps.EncryptionSalt == "" {
			if ps.EncryptionSalt, err = newSalt(phrase); err != nil {
				return err
			}
		}
	case args[0] == "encrypt" && (len(args) == 4 || len(args) == 5 && args[4] == "--path"):
		phrase, err := passphrase()
		if err != nil {
			return err
		}
		crypter, err := crypterFromState(phrase, ps.EncryptionSalt)
		if err != nil {
			return err
		}
		key, err := config.ParseKey(args[2])
		if err != nil {
			return err
		}
		ciphertext, err := crypter.EncryptValue(context.Background(), args[3])
		if err != nil {
			return err
		}
		if err := ps.Config.Set(key, config.NewSecureValue(ciphertext), len(args) == 5); err != nil {
			return fmt.Errorf("could not set config: %w", err)
		}
	case args[0] == "decrypt" && len(args) == 2:
		phrase, err := passphrase()
		if err != nil {
			return err
		}
		crypter, err := crypterFromState(phrase, ps.EncryptionSalt)
		if err != nil {
			return err
		}
		keys := make([]config.Key, 0, len(ps.Config))
		for key, value := range ps.Config {
			if value.Secure() {
				keys = append(keys, key)
			}
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, key := range keys {
			status := "ok"
			if _, err := ps.Config[key].Value(crypter); err != nil {
				status = err.Error()
			}
			fmt.Printf("%s: %s\n", key, status)
		}
		return nil
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
