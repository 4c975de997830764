package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/store"
)

// ImageService is what the CLI needs of images beside their baselines (#18):
// inventories, SBOM and scanner-report imports, and the report.
type ImageService interface {
	// Inventory is one image's (repository:tag), or store.ErrNotFound.
	Inventory(ctx context.Context, image string) (*model.Inventory, error)
	// ImportSBOM replaces an image's package list with an SBOM's.
	ImportSBOM(ctx context.Context, image string, pkgs []model.Package) error
	// ImportVulns replaces an image's vulnerability report.
	ImportVulns(ctx context.Context, r *model.VulnReport) error
	// Reports gives every known image's report, alerts counted from since.
	Reports(ctx context.Context, since time.Time) ([]model.ImageReport, error)
	// ImportInventories merges inventories (from a baseline file) into the
	// images' own, all or nothing.
	ImportInventories(ctx context.Context, invs []*model.Inventory) error
}

// ErrBadImage: an import names no usable image.
var ErrBadImage = errors.New("bad image reference")

// sbomImport is the body of POST /v1/images/sbom.
type sbomImport struct {
	Image    string          `json:"image"`
	Packages []model.Package `json:"packages"`
}

func imageHandlers(mux *http.ServeMux, svc ImageService, log *slog.Logger) {
	mux.HandleFunc("GET /v1/images/inventory", func(w http.ResponseWriter, r *http.Request) {
		inv, err := svc.Inventory(r.Context(), r.URL.Query().Get("image"))
		reply(w, log, inv, err)
	})
	mux.HandleFunc("POST /v1/images/sbom", func(w http.ResponseWriter, r *http.Request) {
		var in sbomImport
		err := decodeBody(w, r, &in)
		if err == nil {
			err = svc.ImportSBOM(r.Context(), in.Image, in.Packages)
		}
		reply(w, log, map[string]int{"packages": len(in.Packages)}, err)
	})
	mux.HandleFunc("POST /v1/images/vulns", func(w http.ResponseWriter, r *http.Request) {
		var in model.VulnReport
		err := decodeBody(w, r, &in)
		if err == nil {
			err = svc.ImportVulns(r.Context(), &in)
		}
		reply(w, log, map[string]int{"findings": len(in.Findings)}, err)
	})
	mux.HandleFunc("POST /v1/images/inventories", func(w http.ResponseWriter, r *http.Request) {
		var in []*model.Inventory
		err := decodeBody(w, r, &in)
		for i, inv := range in {
			if err == nil && inv == nil {
				err = fmt.Errorf("%w: inventories[%d] is null", store.ErrBadImport, i)
			}
		}
		if err == nil {
			err = svc.ImportInventories(r.Context(), in)
		}
		reply(w, log, map[string]int{"inventories": len(in)}, err)
	})
	mux.HandleFunc("GET /v1/images/report", func(w http.ResponseWriter, r *http.Request) {
		since, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("since"))
		if err != nil {
			reply(w, log, nil, fmt.Errorf("%w: since: %v", store.ErrBadImport, err))
			return
		}
		reports, err := svc.Reports(r.Context(), since)
		reply(w, log, reports, err)
	})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxImportBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", store.ErrBadImport, err)
	}
	return nil
}

// Inventory implements ImageService.
func (c *Client) Inventory(ctx context.Context, image string) (*model.Inventory, error) {
	var inv model.Inventory
	if err := c.call(ctx, http.MethodGet, "/v1/images/inventory", url.Values{"image": {image}}, nil, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}

// ImportSBOM implements ImageService.
func (c *Client) ImportSBOM(ctx context.Context, image string, pkgs []model.Package) error {
	return c.post(ctx, "/v1/images/sbom", sbomImport{Image: image, Packages: pkgs})
}

// ImportVulns implements ImageService.
func (c *Client) ImportVulns(ctx context.Context, r *model.VulnReport) error {
	return c.post(ctx, "/v1/images/vulns", r)
}

// ImportInventories implements ImageService.
func (c *Client) ImportInventories(ctx context.Context, invs []*model.Inventory) error {
	return c.post(ctx, "/v1/images/inventories", invs)
}

// Reports implements ImageService.
func (c *Client) Reports(ctx context.Context, since time.Time) ([]model.ImageReport, error) {
	var out []model.ImageReport
	return out, c.call(ctx, http.MethodGet, "/v1/images/report", url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}}, nil, &out)
}

func (c *Client) post(ctx context.Context, path string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodPost, path, nil, bytes.NewReader(body), nil)
}
