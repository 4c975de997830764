package profiler

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/cagewatch/cagewatch/configs"
	"github.com/cagewatch/cagewatch/model"
)

// LoadRules reads a rules file ("" = the embedded configs/rules.yaml). Unknown
// fields, wrong types and invalid rules are errors naming the file, rule and field.
func LoadRules(path string) (*model.RuleSet, error) {
	raw := configs.DefaultRulesYAML
	name := "embedded rules.yaml"
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("rules file: %w", err)
		}
		name = path
	}
	var file struct {
		Rules []model.RuleSpec `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("rules file %s: %w", name, err)
	}
	if len(file.Rules) == 0 {
		return nil, fmt.Errorf("rules file %s: no rules", name)
	}
	rs, err := model.CompileRules(file.Rules)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", name, err)
	}
	return rs, nil
}
