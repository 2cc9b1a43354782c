// cloudflared-check: a remotely managed tunnel's configuration, read by cloudflared's own code.
//
// A cloudflared connector of a remotely managed tunnel receives its configuration from Cloudflare
// as JSON and loads it with ingress.RemoteConfig's UnmarshalJSON (orchestration.UpdateConfig),
// which validates every ingress rule (hostnames, service URLs, the catch-all last, the origin
// request settings). This program does exactly that with the JSON on stdin, and prints each rule
// as cloudflared understood it, one per line, or the error cloudflared would log and refuse with.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/cloudflare/cloudflared/ingress"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var remote ingress.RemoteConfig
	if err := json.Unmarshal(raw, &remote); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, rule := range remote.Ingress.Rules {
		fmt.Printf("%s\t%s\t%s\n", rule.Hostname, rule.Service.String(), rule.Config.OriginServerName)
	}
}
