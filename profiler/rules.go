package profiler

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
		return nil, fmt.Errorf("rules file %s: %w", name, nameRulesInError(raw, flattenYAMLError(err)))
	}
	if len(file.Rules) == 0 {
		return nil, fmt.Errorf("rules file %s: no rules", name)
	}
	specs := file.Rules
	rs, err := model.CompileRules(specs)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", name, err)
	}
	return rs, nil
}

// flattenYAMLError puts yaml's multi-line "unmarshal errors:" on one line.
func flattenYAMLError(err error) error {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	return errors.New(strings.ReplaceAll(msg, "errors:;", "errors:"))
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// nameRulesInError adds, to a YAML decode error, the rule each "line N" falls in,
// so an unknown or mistyped field is reported with its rule.
func nameRulesInError(raw []byte, err error) error {
	var doc struct {
		Rules []yaml.Node `yaml:"rules"`
	}
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Rules) == 0 {
		return err
	}
	var names []string
	for _, m := range yamlLine.FindAllStringSubmatch(err.Error(), -1) {
		line, _ := strconv.Atoi(m[1])
		for i := len(doc.Rules) - 1; i >= 0; i-- {
			if doc.Rules[i].Line <= line {
				names = append(names, ruleName(&doc.Rules[i], i))
				break
			}
		}
	}
	if len(names) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s: %v", model.ErrBadRule, strings.Join(slices.Compact(names), ", "), err)
}

// ruleName names a rule node by its id, or by position.
func ruleName(node *yaml.Node, i int) string {
	for j := 0; j+1 < len(node.Content); j += 2 {
		if node.Content[j].Value == "id" {
			return fmt.Sprintf("rule %q", node.Content[j+1].Value)
		}
	}
	return fmt.Sprintf("rules[%d]", i)
}
