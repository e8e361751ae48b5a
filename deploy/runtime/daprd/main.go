// Command daprd is the Dapr sidecar with Sidecart's curated component set.
//
// dapr's cmd/daprd registers its components behind the allcomponents/stablecomponents build tags, which compile
// every cloud SDK, and panics when neither tag is set. build.sh builds this main against a copy of the pinned
// dapr module without that guard, so dapr's app package runs with only the components in ../components.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

// tokensDirVariable names the folder of each app's API token pair (<app id>.json, written by the dev stack's
// setup). daprd reads DAPR_API_TOKEN and APP_API_TOKEN from its environment only, and `dapr run -f` starts every
// daprd with its own environment, so without this one token pair would serve every app. On Kubernetes the
// injector sets both per app from a secret and this variable is not set.
const tokensDirVariable = "SIDECART_TOKENS_DIR"

func main() {
	if err := useAppTokens(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "daprd: %v\n", err)
		os.Exit(1)
	}
	os.Args = append(append([]string{os.Args[0]}, loopbackDefaults...), os.Args[1:]...)
	app.Run()
}

// useAppTokens sets DAPR_API_TOKEN and APP_API_TOKEN from the app's token file when SIDECART_TOKENS_DIR is set.
// A missing or incomplete file stops daprd: a sidecar that was meant to require a token never runs without one.
func useAppTokens(args []string) error {
	dir := os.Getenv(tokensDirVariable)
	if dir == "" {
		return nil
	}
	appID := flagValue(args, "app-id")
	if appID == "" || strings.ContainsAny(appID, `/\`) || strings.HasPrefix(appID, ".") {
		return fmt.Errorf("%s is set, but --app-id %q names no token file", tokensDirVariable, appID)
	}
	raw, err := os.ReadFile(filepath.Join(dir, appID+".json"))
	if err != nil {
		return fmt.Errorf("reading the API tokens of %s: %w", appID, err)
	}
	var pair map[string]string
	if err := json.Unmarshal(raw, &pair); err != nil {
		return fmt.Errorf("the API tokens of %s: %w", appID, err)
	}
	for _, name := range []string{"DAPR_API_TOKEN", "APP_API_TOKEN"} {
		if pair[name] == "" {
			return fmt.Errorf("the API tokens of %s have no %s", appID, name)
		}
		if err := os.Setenv(name, pair[name]); err != nil {
			return err
		}
	}
	return nil
}

// flagValue finds --name value, --name=value, -name value or -name=value, as daprd's flag parser accepts them.
func flagValue(args []string, name string) string {
	for i, arg := range args {
		trimmed := strings.TrimLeft(arg, "-")
		if trimmed == arg {
			continue
		}
		if value, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return value
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
