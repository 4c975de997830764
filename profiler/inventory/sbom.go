package inventory

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_1"
	"github.com/spdx/tools-golang/spdx/v2/v2_2"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/cagewatch/cagewatch/model"
)

// SourceSPDX is the inventory source of packages read from an SPDX SBOM.
const SourceSPDX = "spdx"

var (
	// ErrSBOMFormat: the input is no SBOM format that ParseSBOM reads (not
	// JSON, CycloneDX, SPDX tag-value, an SPDX version the parser lacks, …).
	ErrSBOMFormat = errors.New("unsupported SBOM format")
	// ErrSBOMInvalid: the input is SPDX JSON, but broken or empty.
	ErrSBOMInvalid = errors.New("invalid SPDX SBOM")
)

// sbomSyftHint is the command that makes an SBOM ParseSBOM reads.
const sbomSyftHint = "syft -o spdx-json"

// ParseSBOM reads an SPDX JSON document (SPDX 2.2 or 2.3, as syft writes with
// -o spdx-json; 2.1 too) into the image's packages, each with the files of it
// that can run or be loaded (see sbomRunnable), as absolute paths in the
// image. A package's files come from the document's relationships: package
// CONTAINS file, file CONTAINED_BY package, and syft's "evident-by" (an OTHER
// relationship from a package to the file that shows it, which is how syft
// links a binary-cataloged package such as busybox to its binary). Every
// package is kept, with or without such files, except the document's subject
// (the scanned image or directory). Source is always SourceSPDX.
//
// Errors wrap ErrSBOMFormat when the input is no SPDX JSON this reads, and
// ErrSBOMInvalid when it is SPDX JSON but broken (a relationship to an
// unknown SPDXID) or lists no packages.
func ParseSBOM(data []byte) (source string, pkgs []model.Package, err error) {
	version, err := sbomSniff(data)
	if err != nil {
		return "", nil, err
	}
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		return "", nil, fmt.Errorf("%w: reading %s JSON: %w", ErrSBOMInvalid, version, err)
	}
	pkgs, err = spdxPackages(doc)
	if err != nil {
		return "", nil, err
	}
	return SourceSPDX, pkgs, nil
}

var (
	sbomUTF8BOM = []byte("\xef\xbb\xbf")
	// An SPDX tag-value document has an "SPDXVersion: SPDX-2.x" line.
	sbomTagValue = regexp.MustCompile(`(?m)^[ \t]*SPDXVersion[ \t]*:`)
	// spdxVersions are the SPDX versions the JSON reader parses.
	spdxVersions = []string{v2_1.Version, v2_2.Version, v2_3.Version}
)

// sbomSniff tells what the input is before the SPDX reader sees it, so that
// each wrong input gets an error naming the problem, and returns its SPDX
// version.
func sbomSniff(data []byte) (version string, err error) {
	data = bytes.TrimSpace(bytes.TrimPrefix(data, sbomUTF8BOM))
	if len(data) == 0 {
		return "", fmt.Errorf("%w: empty input, want SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
	}
	if data[0] != '{' && sbomTagValue.Match(data[:min(len(data), 4096)]) {
		return "", fmt.Errorf("%w: SPDX tag-value is not supported, only SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
	}
	if data[0] == '<' {
		return "", fmt.Errorf("%w: XML (SPDX RDF or CycloneDX XML) is not supported, only SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return "", fmt.Errorf("%w: the JSON is %s %s, not an SPDX document (an object)", ErrSBOMFormat, sbomArticle(typeErr.Value), typeErr.Value)
		}
		return "", fmt.Errorf("%w: not JSON: %w", ErrSBOMFormat, err)
	}
	field := func(name string) string {
		var s string
		if raw, ok := top[name]; ok && json.Unmarshal(raw, &s) != nil {
			return string(raw) // not a string: show it as it is
		}
		return s
	}
	if format := field("bomFormat"); format != "" {
		if strings.EqualFold(format, "CycloneDX") {
			return "", fmt.Errorf("%w: CycloneDX JSON: CycloneDX carries no package→file relationships in syft's output; use SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
		}
		return "", fmt.Errorf("%w: bomFormat %q: not SPDX; use SPDX JSON (%s)", ErrSBOMFormat, format, sbomSyftHint)
	}
	if _, ok := top["spdxVersion"]; !ok {
		switch {
		case strings.Contains(field("@context"), "spdx"):
			return "", fmt.Errorf("%w: SPDX 3 (JSON-LD) is not supported, only SPDX 2.2 and 2.3 JSON (%s)", ErrSBOMFormat, sbomSyftHint)
		case top["artifacts"] != nil && top["schema"] != nil:
			return "", fmt.Errorf("%w: syft's own JSON format is not read, only SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
		}
		return "", fmt.Errorf("%w: JSON without spdxVersion: not an SPDX document; want SPDX JSON (%s)", ErrSBOMFormat, sbomSyftHint)
	}
	version = field("spdxVersion")
	if !slices.Contains(spdxVersions, version) {
		return "", fmt.Errorf("%w: spdxVersion %q is not one the SPDX reader parses (%s); use %s",
			ErrSBOMFormat, version, strings.Join(spdxVersions, ", "), sbomSyftHint)
	}
	return version, nil
}

func sbomArticle(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an"
	}
	return "a"
}

// spdxPackages turns a parsed document into packages with their files.
func spdxPackages(doc *spdx.Document) ([]model.Package, error) {
	type element struct {
		pkg  *spdx.Package
		file *spdx.File
	}
	elems := map[common.ElementID]element{}
	add := func(id common.ElementID, e element) error {
		if _, dup := elems[id]; dup {
			return fmt.Errorf("%w: SPDXID %s is declared twice", ErrSBOMInvalid, common.RenderElementID(id))
		}
		elems[id] = e
		return nil
	}
	if err := add(doc.SPDXIdentifier, element{}); err != nil {
		return nil, err
	}
	for _, p := range doc.Packages {
		if err := add(p.PackageSPDXIdentifier, element{pkg: p}); err != nil {
			return nil, err
		}
	}
	files := slices.Clone(doc.Files)
	for _, p := range doc.Packages {
		files = append(files, p.Files...) // files nested in a package (not syft's way)
	}
	for _, f := range files {
		if err := add(f.FileSPDXIdentifier, element{file: f}); err != nil {
			return nil, err
		}
	}
	for _, s := range doc.Snippets {
		if err := add(s.SnippetSPDXIdentifier, element{}); err != nil {
			return nil, err
		}
	}
	externalDocs := map[common.DocumentID]bool{}
	for _, ref := range doc.ExternalDocumentReferences {
		externalDocs[ref.DocumentRefID] = true
	}

	// Every relationship must name elements the document has; collect the
	// ownership ones.
	type link struct{ pkg, file common.ElementID }
	var owns []link
	describes := map[common.ElementID]bool{}
	containsPkgs := map[common.ElementID]bool{}
	archiveEntry := map[common.ElementID]bool{}
	for _, r := range doc.Relationships {
		for _, ref := range []common.DocElementID{r.RefA, r.RefB} {
			switch {
			case ref.SpecialID != "": // NONE, NOASSERTION
			case ref.DocumentRefID != "":
				if !externalDocs[ref.DocumentRefID] {
					return nil, fmt.Errorf("%w: relationship %q names %s, of an external document the document does not declare",
						ErrSBOMInvalid, spdxRelString(r), common.RenderDocElementID(ref))
				}
			default:
				if _, ok := elems[ref.ElementRefID]; !ok {
					return nil, fmt.Errorf("%w: relationship %q names %s, which is no package, file or snippet of the document",
						ErrSBOMInvalid, spdxRelString(r), common.RenderDocElementID(ref))
				}
			}
		}
		if r.RefA.DocumentRefID != "" || r.RefB.DocumentRefID != "" || r.RefA.SpecialID != "" || r.RefB.SpecialID != "" {
			continue
		}
		a, b := elems[r.RefA.ElementRefID], elems[r.RefB.ElementRefID]
		switch strings.ToUpper(r.Relationship) {
		case common.TypeRelationshipContains:
			switch {
			case a.pkg != nil && b.file != nil:
				owns = append(owns, link{r.RefA.ElementRefID, r.RefB.ElementRefID})
			case a.pkg != nil && b.pkg != nil:
				containsPkgs[r.RefA.ElementRefID] = true
			case a.file != nil && b.file != nil:
				// syft names a file inside an archive by its path in the
				// archive, and the archive CONTAINS it.
				archiveEntry[r.RefB.ElementRefID] = true
			}
		case common.TypeRelationshipContainedBy:
			switch {
			case a.file != nil && b.pkg != nil:
				owns = append(owns, link{r.RefB.ElementRefID, r.RefA.ElementRefID})
			case a.pkg != nil && b.pkg != nil:
				containsPkgs[r.RefB.ElementRefID] = true
			case a.file != nil && b.file != nil:
				archiveEntry[r.RefA.ElementRefID] = true
			}
		case common.TypeRelationshipOther:
			// syft: "evident-by: indicates the package's existence is evident by the given file"
			if a.pkg != nil && b.file != nil && strings.HasPrefix(strings.TrimSpace(r.RelationshipComment), "evident-by:") {
				owns = append(owns, link{r.RefA.ElementRefID, r.RefB.ElementRefID})
			}
		case common.TypeRelationshipDescribe:
			if r.RefA.ElementRefID == doc.SPDXIdentifier {
				describes[r.RefB.ElementRefID] = true
			}
		case common.TypeRelationshipDescribeBy:
			if r.RefB.ElementRefID == doc.SPDXIdentifier {
				describes[r.RefA.ElementRefID] = true
			}
		}
	}

	// The document's subject, the scanned image or directory, is no package
	// of the image: a package the document describes that contains packages,
	// is a container, or is syft's DocumentRoot-… (which contains none when
	// syft found no package).
	subject := func(p *spdx.Package) bool {
		id := p.PackageSPDXIdentifier
		return describes[id] && (containsPkgs[id] || strings.EqualFold(p.PrimaryPackagePurpose, "CONTAINER") ||
			strings.HasPrefix(string(id), "DocumentRoot-"))
	}
	index := map[common.ElementID]int{}
	var pkgs []model.Package
	for _, p := range doc.Packages {
		if subject(p) {
			continue
		}
		if strings.TrimSpace(p.PackageName) == "" {
			return nil, fmt.Errorf("%w: package %s has no name", ErrSBOMInvalid, common.RenderElementID(p.PackageSPDXIdentifier))
		}
		index[p.PackageSPDXIdentifier] = len(pkgs)
		pkgs = append(pkgs, model.Package{Name: p.PackageName, Version: p.PackageVersion, Type: spdxPackageType(p)})
	}
	if len(pkgs) == 0 {
		if len(doc.Packages) > 0 {
			return nil, fmt.Errorf("%w: document %q lists no packages besides %s, the scanned source itself: the scanner found none",
				ErrSBOMInvalid, doc.DocumentName, common.RenderElementID(doc.Packages[0].PackageSPDXIdentifier))
		}
		return nil, fmt.Errorf("%w: document %q lists no packages", ErrSBOMInvalid, doc.DocumentName)
	}
	for _, p := range doc.Packages {
		for _, f := range p.Files {
			owns = append(owns, link{p.PackageSPDXIdentifier, f.FileSPDXIdentifier})
		}
	}
	for _, o := range owns {
		i, ok := index[o.pkg]
		if !ok || archiveEntry[o.file] {
			continue
		}
		f := elems[o.file].file
		if name := sbomCanonical(f.FileName); sbomRunnable(name, f.FileTypes) {
			pkgs[i].Files = append(pkgs[i].Files, name)
		}
	}
	for i := range pkgs {
		slices.Sort(pkgs[i].Files)
		pkgs[i].Files = slices.Compact(pkgs[i].Files)
	}
	slices.SortStableFunc(pkgs, func(a, b model.Package) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Type, b.Type))
	})
	return pkgs, nil
}

func spdxRelString(r *spdx.Relationship) string {
	return common.RenderDocElementID(r.RefA) + " " + r.Relationship + " " + common.RenderDocElementID(r.RefB)
}

// spdxPackageType is the package's type from its purl (pkg:TYPE/…): deb,
// apk, rpm, golang, …, with syft's pkg:generic (binary-cataloged packages)
// as "binary"; "" when the package has no purl.
func spdxPackageType(p *spdx.Package) string {
	for _, ref := range p.PackageExternalReferences {
		if ref == nil || !strings.EqualFold(ref.RefType, common.TypePackageManagerPURL) {
			continue
		}
		rest, ok := strings.CutPrefix(strings.TrimSpace(ref.Locator), "pkg:")
		if !ok {
			continue
		}
		typ, _, _ := strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch typ = strings.ToLower(typ); typ {
		case "":
			continue
		case "generic":
			return "binary"
		default:
			return typ
		}
	}
	return ""
}

// sbomCanonical makes an SPDX file name ("usr/bin/gzip", "./usr/bin/gzip" or
// "/usr/bin/gzip") an absolute clean path in the image. syft names a file by
// its real path, symlinks resolved, which is the path exec events give.
func sbomCanonical(name string) string {
	return path.Clean("/" + strings.TrimSpace(name))
}

// sbomRunnable tells whether an SBOM's file can run or be loaded. An SBOM has
// no mode bits, so beside runnable's rule on the path it takes SPDX file type
// BINARY, which syft gives ELF, Mach-O and PE executables and shared
// libraries (not archives), so helpers outside bin directories count too
// (/usr/lib/openssh/sftp-server, /usr/lib/apt/methods/http).
func sbomRunnable(name string, fileTypes []string) bool {
	if name == "/" {
		return false
	}
	if runnable(name) {
		return true
	}
	for _, t := range fileTypes {
		if strings.EqualFold(t, "BINARY") {
			return true
		}
	}
	return false
}
