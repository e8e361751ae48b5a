// Command daprd is the Dapr sidecar with Sidecart's curated component set.
//
// dapr's cmd/daprd registers its components behind the allcomponents/stablecomponents build tags, which compile
// every cloud SDK, and panics when neither tag is set. build.sh builds this main against a copy of the pinned
// dapr module without that guard, so dapr's app package runs with only the components in ../components.
package main

import (
	"github.com/dapr/dapr/cmd/daprd/app"

	_ "github.com/sidecart/sidecart/deploy/runtime/components"
)

func main() {
	app.Run()
}
