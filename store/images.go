package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/cagewatch/cagewatch/model"
)

// Per-image records beside the baselines (#18), keyed by image reference
// (repository:tag). They are additive buckets, so the schema version stays:
// an older build ignores them and keeps the baselines it knows.
var (
	bucketInventories = []byte("inventories")
	bucketVulns       = []byte("vulnerabilities")
	bucketAlertTally  = []byte("alert_tallies")
)

// ImageStore is the per-image records' side of the store.
type ImageStore interface {
	Inventories() ([]*model.Inventory, error)
	// PutInventories writes all of them in one transaction.
	PutInventories(invs ...*model.Inventory) error
	VulnReports() ([]*model.VulnReport, error)
	PutVulnReport(r *model.VulnReport) error
	AlertTallies() ([]*model.AlertTally, error)
	PutAlertTallies(ts ...*model.AlertTally) error
}

// Inventories returns every image's inventory, sorted by reference.
func (s *Bolt) Inventories() ([]*model.Inventory, error) {
	return readAll(s, bucketInventories, "inventory", (*model.Inventory).Validate, (*model.Inventory).Ref)
}

// PutInventories writes inventories in one transaction.
func (s *Bolt) PutInventories(invs ...*model.Inventory) error {
	return putAll(s, bucketInventories, "inventory", invs, (*model.Inventory).Validate, (*model.Inventory).Ref)
}

// VulnReports returns every image's latest vulnerability report.
func (s *Bolt) VulnReports() ([]*model.VulnReport, error) {
	return readAll(s, bucketVulns, "vulnerability report", (*model.VulnReport).Validate, (*model.VulnReport).Ref)
}

// PutVulnReport replaces an image's vulnerability report.
func (s *Bolt) PutVulnReport(r *model.VulnReport) error {
	return putAll(s, bucketVulns, "vulnerability report", []*model.VulnReport{r}, (*model.VulnReport).Validate, (*model.VulnReport).Ref)
}

// AlertTallies returns every image's daily alert counts.
func (s *Bolt) AlertTallies() ([]*model.AlertTally, error) {
	return readAll(s, bucketAlertTally, "alert tally", (*model.AlertTally).Validate, (*model.AlertTally).Ref)
}

// PutAlertTallies writes tallies in one transaction.
func (s *Bolt) PutAlertTallies(ts ...*model.AlertTally) error {
	return putAll(s, bucketAlertTally, "alert tally", ts, (*model.AlertTally).Validate, (*model.AlertTally).Ref)
}

func readAll[T any](s *Bolt, bucket []byte, what string, validate func(*T) error, ref func(*T) string) ([]*T, error) {
	var out []*T
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			x := new(T)
			if err := json.Unmarshal(v, x); err != nil { // decodes a copy: v is only valid in the tx
				return fmt.Errorf("%w: %s %q: %v", ErrCorruptValue, what, k, err)
			}
			if err := validate(x); err != nil {
				return fmt.Errorf("%w: %s %q: %v", ErrCorruptValue, what, k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *T) int { return strings.Compare(ref(a), ref(b)) })
	return out, err
}

func putAll[T any](s *Bolt, bucket []byte, what string, xs []*T, validate func(*T) error, ref func(*T) string) error {
	if len(xs) == 0 {
		return nil
	}
	encoded := make([][]byte, len(xs))
	for i, x := range xs {
		if err := validate(x); err != nil {
			return fmt.Errorf("writing %s %q: %w", what, ref(x), err)
		}
		raw, err := json.Marshal(x)
		if err != nil {
			return fmt.Errorf("encoding %s %q: %w", what, ref(x), err)
		}
		encoded[i] = raw
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i, x := range xs {
			if err := b.Put([]byte(ref(x)), encoded[i]); err != nil {
				return fmt.Errorf("writing %s %q: %w", what, ref(x), err)
			}
		}
		return nil
	})
}
