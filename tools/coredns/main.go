// CoreDNS as the LAN resolver's image runs it, with the plugins Iluvatar's Corefile uses (and
// template, which the tests' stand-in upstream answers with).
//
// The server, the Corefile parser and each plugin are CoreDNS's own code at the pinned version
// (go.mod); only the plugin set is smaller than the release binary's. The directive order is the
// release's (core/dnsserver's generated list), so a Corefile behaves as it does in the image.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template" // the tests' stand-in upstream
)

func main() {
	coremain.Run()
}
