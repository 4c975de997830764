package model

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ErrNotVulnReport is returned, wrapped with what the input was instead, for
// input that is neither a Grype nor a Trivy JSON report.
var ErrNotVulnReport = errors.New("not a Grype or Trivy JSON report")

// The report versions ParseVulnReport accepts.
//
// Grype's JSON (`grype -o json`) carries no schema version of its own, only
// the tool's (descriptor.version). Grype 0.13.0 (June 2021, vulnerability DB
// schema v3, anchore/grype#327) gave it the shape read here: vulnerability.fix
// {versions, state} in place of fixed-in-version, and relatedVulnerabilities.
// Grype has kept that shape through 0.x; its published schema
// (schema/grype/document/json/schema-1.0.0.json) describes it. A grype 1.x may
// change it, so it is refused until checked.
//
// Trivy's JSON (`trivy image -f json`) has SchemaVersion 2 since trivy 0.20.0
// (aquasecurity/trivy#1110); before it, the report was a bare array of results.
const (
	grypeMinMinor      = 13
	grypeAccepted      = "grype 0.13.0 to 0.x"
	trivySchemaVersion = 2
)

// ParseVulnReport reads a vulnerability scanner's JSON report, Grype's
// (`grype -o json`) or Trivy's (`trivy image -f json`), and returns the
// scanner and version that wrote it ("grype 0.74.7", "trivy 0.50.1 (schema 2)")
// and its findings, one per (vulnerability, package, version), in report
// order. Severities are folded by NormalizeSeverity. Matches Grype lists as
// ignored and findings Trivy lists as modified (ignored, VEX) are left out, as
// the scanners leave them out of their own tables. A report with no findings
// is valid; anything else the function does not recognise, and a finding
// without a vulnerability id or package name, is an error that says what is
// wrong and where.
func ParseVulnReport(data []byte) (scanner string, findings []Vulnerability, err error) {
	bom := []byte("\xef\xbb\xbf") // a UTF-8 byte order mark, as some Windows tools write
	body := bytes.TrimPrefix(data, bom)
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return "", nil, fmt.Errorf("%w: empty input", ErrNotVulnReport)
	}
	if !json.Valid(trimmed) {
		var v any
		err := json.Unmarshal(body, &v)
		var syn *json.SyntaxError
		if errors.As(err, &syn) { // Offset: the bytes read when the decoder gave up
			return "", nil, fmt.Errorf("%w: invalid JSON: %s (near byte %d)", ErrNotVulnReport,
				strings.TrimPrefix(syn.Error(), "json: "), int64(len(data)-len(body))+syn.Offset)
		}
		return "", nil, fmt.Errorf("%w: invalid JSON: %s", ErrNotVulnReport, describeJSONError(err))
	}
	switch trimmed[0] {
	case '{':
	case '[':
		return "", nil, topLevelArrayError(trimmed)
	default:
		return "", nil, fmt.Errorf("%w: the JSON is a %s, not an object", ErrNotVulnReport, jsonKind(trimmed[0]))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &top); err != nil {
		return "", nil, fmt.Errorf("%w: %s", ErrNotVulnReport, describeJSONError(err))
	}
	if err := otherFormat(top); err != nil {
		return "", nil, err
	}
	isTrivy := hasKey(top, "SchemaVersion", "Results", "ArtifactName")
	isGrype := hasKey(top, "matches", "descriptor")
	switch {
	case isTrivy && isGrype:
		return "", nil, fmt.Errorf("%w: it has both Grype keys (matches, descriptor) and Trivy keys (SchemaVersion, Results)",
			ErrNotVulnReport)
	case isTrivy:
		return parseTrivy(top, trimmed)
	case isGrype:
		return parseGrype(top)
	}
	return "", nil, fmt.Errorf("%w: no matches and descriptor (grype -o json) nor SchemaVersion and Results (trivy -f json)",
		ErrNotVulnReport)
}

// Grype's JSON document, the fields read (grype/presenter/models: Document,
// Match, Vulnerability, Fix, Package; descriptor).
type grypeDescriptor struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type grypeMatch struct {
	Vulnerability struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Fix      struct {
			Versions []string `json:"versions"`
			State    string   `json:"state"`
		} `json:"fix"`
	} `json:"vulnerability"`
	Artifact struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Type    string `json:"type"`
		PURL    string `json:"purl"`
	} `json:"artifact"`
}

func parseGrype(top map[string]json.RawMessage) (string, []Vulnerability, error) {
	rawDesc, ok := top["descriptor"]
	if !ok || isJSONNull(rawDesc) {
		return "", nil, errors.New("grype report: no descriptor (the tool name and version)")
	}
	var desc grypeDescriptor
	if err := json.Unmarshal(rawDesc, &desc); err != nil {
		return "", nil, fmt.Errorf("grype report: descriptor: %s", describeJSONError(err))
	}
	if desc.Name != "grype" {
		return "", nil, fmt.Errorf("%w: descriptor.name is %q, not grype", ErrNotVulnReport, truncate(desc.Name, 40))
	}
	if err := checkGrypeVersion(desc.Version); err != nil {
		return "", nil, err
	}
	scanner := "grype " + strings.TrimPrefix(desc.Version, "v")

	rawMatches, ok := top["matches"]
	if !ok || isJSONNull(rawMatches) {
		return "", nil, errors.New("grype report: no matches array")
	}
	var matches []grypeMatch
	if err := json.Unmarshal(rawMatches, &matches); err != nil {
		return "", nil, fmt.Errorf("grype report: %s", describeJSONError(err))
	}
	var d dedup
	for i, m := range matches {
		v, a := m.Vulnerability, m.Artifact
		if strings.TrimSpace(v.ID) == "" {
			return "", nil, fmt.Errorf("grype report: matches[%d] has no vulnerability.id", i)
		}
		if strings.TrimSpace(a.Name) == "" {
			return "", nil, fmt.Errorf("grype report: matches[%d] (%s) has no artifact.name", i, truncate(v.ID, 80))
		}
		var fixes []string
		for _, f := range v.Fix.Versions {
			if f = strings.TrimSpace(f); f != "" {
				fixes = append(fixes, f)
			}
		}
		d.add(Vulnerability{
			ID:       strings.TrimSpace(v.ID),
			Severity: NormalizeSeverity(v.Severity),
			Package:  strings.TrimSpace(a.Name),
			Version:  strings.TrimSpace(a.Version),
			Type:     cmp.Or(a.Type, purlType(a.PURL)),
			FixedIn:  strings.Join(fixes, ", "),
		})
	}
	return scanner, d.findings(), nil
}

// checkGrypeVersion accepts grype 0.13.0 and later 0.x releases, written
// "0.74.7" (or "v0.74.7", or with a pre-release or build suffix).
func checkGrypeVersion(version string) error {
	refuse := func(why string) error {
		return fmt.Errorf("grype report: descriptor.version %q %s (accepted: %s)", version, why, grypeAccepted)
	}
	if version == "" {
		return fmt.Errorf("grype report: no descriptor.version (accepted: %s)", grypeAccepted)
	}
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return refuse("is not a release version")
	}
	major, err1 := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i]
	}
	minor, err2 := strconv.Atoi(minorDigits)
	switch {
	case err1 != nil || err2 != nil:
		return refuse("is not a release version")
	case major != 0:
		return refuse("is not supported")
	case minor < grypeMinMinor:
		return refuse("is older than the fix {versions, state} output")
	}
	return nil
}

// Trivy's JSON report, the fields read (pkg/types: Report, TrivyInfo, Result,
// DetectedVulnerability; pkg/fanal/types: PkgIdentifier).
type trivyReport struct {
	Trivy struct {
		Version string `json:"Version"`
	} `json:"Trivy"`
	Results []struct {
		Target          string `json:"Target"`
		Class           string `json:"Class"`
		Type            string `json:"Type"`
		Vulnerabilities []struct {
			VulnerabilityID  string `json:"VulnerabilityID"`
			PkgName          string `json:"PkgName"`
			InstalledVersion string `json:"InstalledVersion"`
			FixedVersion     string `json:"FixedVersion"`
			Severity         string `json:"Severity"`
			PkgIdentifier    struct {
				PURL string `json:"PURL"`
			} `json:"PkgIdentifier"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

func parseTrivy(top map[string]json.RawMessage, data []byte) (string, []Vulnerability, error) {
	rawVersion, ok := top["SchemaVersion"]
	if !ok || isJSONNull(rawVersion) {
		return "", nil, fmt.Errorf("trivy report: no SchemaVersion (accepted: %d, trivy 0.20.0 and later)", trivySchemaVersion)
	}
	var schema int
	if err := json.Unmarshal(rawVersion, &schema); err != nil {
		return "", nil, fmt.Errorf("trivy report: SchemaVersion %s is not an integer (accepted: %d)", truncate(string(rawVersion), 40),
			trivySchemaVersion)
	}
	if schema != trivySchemaVersion {
		return "", nil, fmt.Errorf("trivy report: SchemaVersion %d not supported (accepted: %d)", schema, trivySchemaVersion)
	}
	var r trivyReport
	if err := json.Unmarshal(data, &r); err != nil {
		return "", nil, fmt.Errorf("trivy report: %s", describeJSONError(err))
	}
	scanner := fmt.Sprintf("trivy (schema %d)", schema)
	if v := strings.TrimSpace(r.Trivy.Version); v != "" {
		scanner = fmt.Sprintf("trivy %s (schema %d)", strings.TrimPrefix(v, "v"), schema)
	}
	var d dedup
	for i, res := range r.Results {
		for j, v := range res.Vulnerabilities {
			where := fmt.Sprintf("Results[%d].Vulnerabilities[%d]", i, j)
			if strings.TrimSpace(v.VulnerabilityID) == "" {
				return "", nil, fmt.Errorf("trivy report: %s (target %q) has no VulnerabilityID", where, truncate(res.Target, 120))
			}
			if strings.TrimSpace(v.PkgName) == "" {
				return "", nil, fmt.Errorf("trivy report: %s (%s, target %q) has no PkgName", where, truncate(v.VulnerabilityID, 80),
					truncate(res.Target, 120))
			}
			d.add(Vulnerability{
				ID:       strings.TrimSpace(v.VulnerabilityID),
				Severity: NormalizeSeverity(v.Severity),
				Package:  strings.TrimSpace(v.PkgName),
				Version:  strings.TrimSpace(v.InstalledVersion),
				Type:     cmp.Or(trivyPackageType(res.Type), purlType(v.PkgIdentifier.PURL)),
				FixedIn:  strings.TrimSpace(v.FixedVersion),
			})
		}
	}
	return scanner, d.findings(), nil
}

// trivyOSTypes maps Trivy's operating-system target types (pkg/fanal/types
// const.go) to their package format, the name Grype and the inventory use.
var trivyOSTypes = map[string]string{
	"debian": "deb", "ubuntu": "deb",
	"alpine": "apk", "wolfi": "apk", "chainguard": "apk",
	"alma": "rpm", "amazon": "rpm", "cbl-mariner": "rpm", "centos": "rpm", "fedora": "rpm", "opensuse": "rpm",
	"opensuse.leap": "rpm", "opensuse.tumbleweed": "rpm", "oracle": "rpm", "photon": "rpm", "redhat": "rpm",
	"rocky": "rpm", "suse linux enterprise server": "rpm",
}

// trivyPackageType is the package type of a Trivy result: the package format
// for an operating system's packages, else Trivy's own type ("gobinary",
// "jar", "npm", …).
func trivyPackageType(t string) string {
	if f, ok := trivyOSTypes[t]; ok {
		return f
	}
	return t
}

// purlType is a package URL's type ("deb" of "pkg:deb/debian/bash@5.2"), or "".
func purlType(purl string) string {
	rest, ok := strings.CutPrefix(purl, "pkg:")
	if !ok {
		return ""
	}
	t, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return strings.ToLower(t)
}

// dedup collects findings, one per (ID, Package, Version) in first-seen
// order. Scanners report one vulnerability of one package more than once when
// the package sits in several places or two matchers find it; the copies
// merge to the most severe severity, and the first type and fix known.
type dedup struct {
	list  []Vulnerability
	index map[[3]string]int
}

func (d *dedup) add(v Vulnerability) {
	if d.index == nil {
		d.index = map[[3]string]int{}
	}
	k := [3]string{v.ID, v.Package, v.Version}
	i, seen := d.index[k]
	if !seen {
		d.index[k] = len(d.list)
		d.list = append(d.list, v)
		return
	}
	f := &d.list[i]
	if SeverityRank(v.Severity) < SeverityRank(f.Severity) {
		f.Severity = v.Severity
	}
	f.Type = cmp.Or(f.Type, v.Type)
	f.FixedIn = cmp.Or(f.FixedIn, v.FixedIn)
}

// findings is the list, empty rather than nil so that a clean report encodes
// as [].
func (d *dedup) findings() []Vulnerability {
	if d.list == nil {
		return []Vulnerability{}
	}
	return d.list
}

// otherFormat recognises the other JSON the same tools write, to name it.
func otherFormat(top map[string]json.RawMessage) error {
	var s string
	if raw, ok := top["bomFormat"]; ok && json.Unmarshal(raw, &s) == nil && s == "CycloneDX" {
		return fmt.Errorf("%w: a CycloneDX document (bomFormat CycloneDX); give the scanner's native JSON, grype -o json or trivy image -f json",
			ErrNotVulnReport)
	}
	if _, ok := top["spdxVersion"]; ok {
		return fmt.Errorf("%w: an SPDX document (spdxVersion); give the scanner's native JSON, grype -o json or trivy image -f json",
			ErrNotVulnReport)
	}
	if raw, ok := top["$schema"]; ok && json.Unmarshal(raw, &s) == nil && strings.Contains(strings.ToLower(s), "sarif") {
		return fmt.Errorf("%w: a SARIF log ($schema %s); give the scanner's native JSON, grype -o json or trivy image -f json",
			ErrNotVulnReport, truncate(s, 80))
	}
	if _, ok := top["runs"]; ok {
		if _, ok := top["version"]; ok {
			return fmt.Errorf("%w: a SARIF log (runs, version); give the scanner's native JSON, grype -o json or trivy image -f json",
				ErrNotVulnReport)
		}
	}
	return nil
}

// topLevelArrayError explains a top-level array: Trivy before 0.20 wrote its
// report as a bare array of results.
func topLevelArrayError(data []byte) error {
	var items []map[string]json.RawMessage
	if json.Unmarshal(data, &items) == nil && len(items) > 0 {
		if _, ok := items[0]["Target"]; ok {
			return fmt.Errorf("trivy report: a bare array of results, the format before SchemaVersion (trivy 0.19 and older), not supported (accepted: SchemaVersion %d, trivy 0.20.0 and later)",
				trivySchemaVersion)
		}
	}
	return fmt.Errorf("%w: the JSON is an array, not an object", ErrNotVulnReport)
}

// describeJSONError says what is wrong with the JSON without the decoder's Go
// type names.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "invalid"
	case errors.As(err, &syn):
		return fmt.Sprintf("%s (near byte %d)", strings.TrimPrefix(syn.Error(), "json: "), syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s is a JSON %s, want %s", field, typ.Value, goKindName(typ.Type))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func goKindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Pointer:
		return goKindName(t.Elem())
	}
	return "another type"
}

func jsonKind(first byte) string {
	switch first {
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func isJSONNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func hasKey(m map[string]json.RawMessage, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
