// Package configs embeds the default configuration so the binary runs with no files.
package configs

import _ "embed"

// DefaultYAML is configs/cagewatch.yaml.
//
//go:embed cagewatch.yaml
var DefaultYAML []byte

// DefaultRulesYAML is configs/rules.yaml.
//
//go:embed rules.yaml
var DefaultRulesYAML []byte
