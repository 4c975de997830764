package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// The export format: see docs/baseline-format.md. Version 2 added the
// composition, order and volume views and the sample's grams; version 3 the
// learned exceptions of learnable rules; version 4 the images' inventories
// (packages and executed binaries, #18); version 5 when a baseline became
// stable and a new tag's prior (#17).
const (
	FormatName    = "cagewatch-baseline"
	FormatVersion = 5
	// oldestFormatVersion is the oldest version Import still reads and upgrades.
	oldestFormatVersion = 1
)

// ErrBadImport is wrapped by every import validation error.
var ErrBadImport = errors.New("invalid baseline file")

type exportFile struct {
	Format    string            `json:"format"`
	Version   int               `json:"version"`
	Exported  time.Time         `json:"exported"`
	Baselines []*model.Baseline `json:"baselines"`
	// Inventories are the exported images' inventories (format 4).
	Inventories []*model.Inventory `json:"inventories,omitempty"`
}

// File is an export file's contents.
type File struct {
	Baselines   []*model.Baseline
	Inventories []*model.Inventory
}

// Export writes baselines in the versioned export format.
func Export(w io.Writer, baselines []*model.Baseline, now time.Time) error {
	return ExportFile(w, File{Baselines: baselines}, now)
}

// ExportFile writes baselines and inventories in the versioned export format.
func ExportFile(w io.Writer, f File, now time.Time) error {
	if f.Baselines == nil {
		f.Baselines = []*model.Baseline{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(exportFile{Format: FormatName, Version: FormatVersion, Exported: now.UTC(), Baselines: f.Baselines,
		Inventories: f.Inventories})
}

// Import reads and fully validates an export file's baselines.
func Import(r io.Reader) ([]*model.Baseline, error) {
	f, err := ImportFile(r)
	return f.Baselines, err
}

// ImportFile reads and fully validates an export file. It returns nothing
// unless everything in it is valid, so a caller can write all or nothing.
func ImportFile(r io.Reader) (File, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return File{}, fmt.Errorf("%w: reading: %v", ErrBadImport, err)
	}
	var header struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(raw, &header); err != nil {
		return File{}, fmt.Errorf("%w: %s", ErrBadImport, describeJSONError(raw, err))
	}
	if header.Format != FormatName {
		return File{}, fmt.Errorf("%w: format %q, want %q", ErrBadImport, header.Format, FormatName)
	}
	if header.Version < oldestFormatVersion || header.Version > FormatVersion {
		return File{}, fmt.Errorf("%w: unsupported version %d (this build reads versions %d to %d)",
			ErrBadImport, header.Version, oldestFormatVersion, FormatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f exportFile
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("%w: %s", ErrBadImport, describeJSONError(raw, err))
	}
	if dec.More() {
		return File{}, fmt.Errorf("%w: trailing data after the JSON document", ErrBadImport)
	}
	seen := make(map[string]bool, len(f.Baselines))
	for i, b := range f.Baselines {
		if b == nil {
			return File{}, fmt.Errorf("%w: baselines[%d] is null", ErrBadImport, i)
		}
		if header.Version == 1 {
			b.UpgradeViews() // keeps views a development build wrote into version 1
		}
		b.FillEmpty()
		if err := b.Validate(); err != nil {
			return File{}, fmt.Errorf("%w: baselines[%d]: %v", ErrBadImport, i, err)
		}
		if seen[b.Key()] {
			return File{}, fmt.Errorf("%w: baselines[%d]: image %q appears twice", ErrBadImport, i, b.Key())
		}
		seen[b.Key()] = true
	}
	refs := make(map[string]bool, len(f.Inventories))
	for i, inv := range f.Inventories {
		if inv == nil {
			return File{}, fmt.Errorf("%w: inventories[%d] is null", ErrBadImport, i)
		}
		if err := inv.Validate(); err != nil {
			return File{}, fmt.Errorf("%w: inventories[%d]: %v", ErrBadImport, i, err)
		}
		if refs[inv.Ref()] {
			return File{}, fmt.Errorf("%w: inventories[%d]: image %q appears twice", ErrBadImport, i, inv.Ref())
		}
		refs[inv.Ref()] = true
	}
	return File{Baselines: f.Baselines, Inventories: f.Inventories}, nil
}

// describeJSONError adds where in the file a decode error happened.
func describeJSONError(raw []byte, err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Sprintf("truncated JSON (file ends after %d bytes)", len(raw))
	case errors.As(err, &syntax) && syntax.Error() == "unexpected end of JSON input":
		return fmt.Sprintf("truncated JSON (file ends after %d bytes)", len(raw))
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: %s is not a valid %s (at byte %d)", typ.Field, typ.Value, typ.Type, typ.Offset)
	}
	return err.Error()
}
