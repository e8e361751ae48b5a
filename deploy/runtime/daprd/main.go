// Command daprd is the Dapr sidecar with Sidecart's curated component set.
//
// dapr's cmd/daprd registers its components behind the allcomponents/stablecomponents build tags, which compile
// every cloud SDK, and panics when neither tag is set. build.sh builds this main against a copy of the pinned
// dapr module without that guard, so dapr's app package runs with only the components in ../components.
package main

import (
	"os"

	"github.com/dapr/dapr/cmd/daprd/app"

	_ "github.com/sidecart/sidecart/deploy/runtime/components"
)

// loopbackDefaults: this build runs sidecars on one machine, so every server daprd opens listens on loopback
// unless its command line says otherwise (a later flag wins). Upstream daprd listens on every interface for its
// API, its internal gRPC server (sidecar to sidecar) and its metrics, and `dapr run -f` can set only the API's
// address (apiListenAddresses).
var loopbackDefaults = []string{
	"--dapr-listen-addresses=127.0.0.1",
	"--dapr-internal-grpc-listen-address=127.0.0.1",
	"--metrics-listen-address=127.0.0.1",
}

func main() {
	os.Args = append(append([]string{os.Args[0]}, loopbackDefaults...), os.Args[1:]...)
	app.Run()
}
