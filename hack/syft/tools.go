//go:build tools

// Package tools pins syft, the SBOM generator the SBOM tests and fixtures use
// (hack/syft.sh builds it to bin/syft). It lives in its own module so that
// syft's dependencies stay out of the agent's go.mod.
package tools

import _ "github.com/anchore/syft/cmd/syft"
