// Package store persists baselines in an embedded bbolt file and owns the
// baseline export format. The Store interface is small so that a distributed
// backend can sit beside bbolt later.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/cagewatch/cagewatch/model"
)

// Store keeps baselines by image key.
type Store interface {
	Baselines() ([]*model.Baseline, error)
	Baseline(key string) (*model.Baseline, error)
	// PutBaselines writes all of them in one transaction: all or nothing.
	PutBaselines(bs ...*model.Baseline) error
	DeleteBaseline(key string) error
	Close() error
}

// SchemaVersion is the layout this build writes. Schema 2: baselines carry
// the composition, order and volume views. Schema 3: baselines carry learned
// exceptions; older values have none, and an older build must not open the
// store and drop them on its next write. Schema 4: images are keyed by their
// familiar (Docker) names, so a CRI runtime's "docker.io/library/nginx" and
// Docker's "nginx" are one baseline. Schema 5: keys keep repository and tag
// apart (keys.go), so a new tag finds its repository's others without
// parsing references.
const SchemaVersion = 5

var (
	bucketMeta      = []byte("meta")
	bucketBaselines = []byte("baselines")
	keySchema       = []byte("schema_version")
	// buckets is the fixed bucket table; Open creates any that are missing.
	buckets = [][]byte{bucketMeta, bucketBaselines, bucketInventories, bucketVulns, bucketAlertTally, bucketFleet}
)

// migrations[v] upgrades a store from schema v to v+1, inside Open's transaction.
// Version 0 is a new file. Add an entry here, and bump SchemaVersion, whenever the
// layout or the value encoding changes.
var migrations = map[int]func(tx *bolt.Tx) error{
	0: func(*bolt.Tx) error { return nil }, // the buckets are created by Open
	1: upgradeBaselineViews,
	2: func(*bolt.Tx) error { return nil }, // no exceptions learned yet: nothing to rewrite
	3: familiarImageKeys,
	4: splitRepositoryAndTag,
}

// splitRepositoryAndTag re-keys every baseline from its profile key to
// storeKey, taken from the decoded baseline's own fields. A value that does
// not decode moves under the key its old name splits to, so reads still
// report it by name and DeleteBaseline still finds it.
func splitRepositoryAndTag(tx *bolt.Tx) error {
	bucket := tx.Bucket(bucketBaselines)
	moved := map[string][]byte{}
	var old [][]byte
	err := bucket.ForEach(func(k, v []byte) error {
		old = append(old, bytes.Clone(k))
		var b model.Baseline
		to := storeKeys(string(k))[0]
		if json.Unmarshal(v, &b) == nil && b.Key() == string(k) {
			to = storeKey(&b)
		}
		moved[string(to)] = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := bucket.Delete(k); err != nil {
			return fmt.Errorf("removing baseline %q: %w", k, err)
		}
	}
	for k, v := range moved {
		if err := bucket.Put([]byte(k), v); err != nil {
			return fmt.Errorf("writing baseline %q: %w", profileOf([]byte(k)), err)
		}
	}
	return nil
}

// mergeKeepingStable merges o into b; one image's baselines under two names
// were learned apart, and a stable one must not go back to learning.
func mergeKeepingStable(b, o *model.Baseline) error {
	stable := b.State == model.StateStable || o.State == model.StateStable
	if err := b.Merge(o, model.DefaultSampleSize); err != nil {
		return err
	}
	if stable {
		b.State = model.StateStable
	}
	return nil
}

// familiarImageKeys re-keys baselines stored under a registry-qualified
// Docker Hub name by their familiar one, merging into a baseline already
// there (model.Baseline.Merge). Values that do not decode are left alone, as
// in upgradeBaselineViews.
func familiarImageKeys(tx *bolt.Tx) error {
	bucket := tx.Bucket(bucketBaselines)
	moved := map[string]*model.Baseline{}
	var old []string
	err := bucket.ForEach(func(k, v []byte) error {
		var b model.Baseline
		if json.Unmarshal(v, &b) != nil || model.FamiliarImage(b.Image) == b.Image {
			return nil
		}
		b.Image = model.FamiliarImage(b.Image)
		b.FillEmpty()
		old = append(old, string(k))
		if into := moved[b.Key()]; into != nil {
			return mergeKeepingStable(into, &b)
		}
		moved[b.Key()] = &b
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := bucket.Delete([]byte(k)); err != nil {
			return fmt.Errorf("removing baseline %q: %w", k, err)
		}
	}
	for key, b := range moved {
		if raw := bucket.Get([]byte(key)); raw != nil {
			var there model.Baseline
			if json.Unmarshal(raw, &there) == nil {
				there.FillEmpty()
				if err := mergeKeepingStable(&there, b); err != nil {
					return fmt.Errorf("merging baseline %q: %w", key, err)
				}
				b = &there
			}
		}
		raw, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encoding baseline %q: %w", key, err)
		}
		if err := bucket.Put([]byte(key), raw); err != nil {
			return fmt.Errorf("writing baseline %q: %w", key, err)
		}
	}
	return nil
}

// upgradeBaselineViews rebuilds the views of every stored baseline from its
// sample (model.Baseline.UpgradeViews). A value that does not decode or
// validate is left as it was: reads report it as ErrCorruptValue naming its
// key, as before, and DeleteBaseline can remove it, where failing here would
// keep the whole store from opening.
func upgradeBaselineViews(tx *bolt.Tx) error {
	bucket := tx.Bucket(bucketBaselines)
	upgraded := map[string][]byte{}
	err := bucket.ForEach(func(k, v []byte) error {
		var b model.Baseline
		if json.Unmarshal(v, &b) != nil {
			return nil
		}
		b.UpgradeViews()
		b.FillEmpty()
		if b.Validate() != nil {
			return nil
		}
		raw, err := json.Marshal(&b)
		if err != nil {
			return fmt.Errorf("encoding baseline %q: %w", k, err)
		}
		upgraded[string(k)] = raw // k is only valid in the tx, and Put must wait for ForEach
		return nil
	})
	if err != nil {
		return err
	}
	for k, raw := range upgraded {
		if err := bucket.Put([]byte(k), raw); err != nil {
			return fmt.Errorf("writing baseline %q: %w", k, err)
		}
	}
	return nil
}

var (
	ErrNotFound     = errors.New("baseline not found")
	ErrLocked       = errors.New("store is locked by another process (is a cagewatch agent running?)")
	ErrNewerSchema  = errors.New("store was written by a newer cagewatch")
	ErrCorruptValue = errors.New("corrupt baseline in store")
)

// Bolt is the embedded bbolt store.
type Bolt struct {
	db *bolt.DB
}

// Open opens or creates the store at path, creating its directory (0700) and
// migrating an older schema. It waits at most lockWait for another process's lock.
func Open(path string, lockWait time.Duration) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("store %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &Bolt{db: db}
	if err := db.Update(s.migrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return s, nil
}

func (s *Bolt) migrate(tx *bolt.Tx) error {
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	version := 0
	if raw := meta.Get(keySchema); raw != nil {
		v, err := strconv.Atoi(string(raw))
		if err != nil {
			return fmt.Errorf("schema version %q: %w", raw, err)
		}
		version = v
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: schema %d, this build knows up to %d", ErrNewerSchema, version, SchemaVersion)
	}
	for ; version < SchemaVersion; version++ {
		step, ok := migrations[version]
		if !ok {
			return fmt.Errorf("no migration from schema %d", version)
		}
		if err := step(tx); err != nil {
			return fmt.Errorf("migrating schema %d to %d: %w", version, version+1, err)
		}
	}
	return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }

// Baselines returns every baseline, sorted by key.
func (s *Bolt) Baselines() ([]*model.Baseline, error) {
	var out []*model.Baseline
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBaselines).ForEach(func(k, v []byte) error {
			b, err := decodeBaseline(profileOf(k), v)
			if err != nil {
				return err
			}
			out = append(out, b)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *model.Baseline) int { return strings.Compare(a.Key(), b.Key()) })
	return out, err
}

// Baseline returns one baseline, or ErrNotFound.
func (s *Bolt) Baseline(key string) (*model.Baseline, error) {
	var b *model.Baseline
	err := s.db.View(func(tx *bolt.Tx) error {
		_, v := find(tx.Bucket(bucketBaselines), key)
		if v == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		var err error
		b, err = decodeBaseline(key, v) // decodes a copy: v is only valid in the tx
		return err
	})
	return b, err
}

// PutBaselines writes the baselines in one transaction.
func (s *Bolt) PutBaselines(bs ...*model.Baseline) error {
	if len(bs) == 0 {
		return nil
	}
	encoded := make([][]byte, len(bs))
	for i, b := range bs {
		raw, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encoding baseline %q: %w", b.Key(), err)
		}
		encoded[i] = raw
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		bucket := tx.Bucket(bucketBaselines)
		for i, b := range bs {
			if err := bucket.Put(storeKey(b), encoded[i]); err != nil {
				return fmt.Errorf("writing baseline %q: %w", b.Key(), err)
			}
		}
		return nil
	})
}

// DeleteBaseline removes one baseline; ErrNotFound if there was none.
func (s *Bolt) DeleteBaseline(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bucket := tx.Bucket(bucketBaselines)
		k, _ := find(bucket, key)
		if k == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return bucket.Delete(k)
	})
}

// find looks a profile key up: the stored key and value, or nils.
func find(bucket *bolt.Bucket, profile string) (key, value []byte) {
	for _, k := range storeKeys(profile) {
		if v := bucket.Get(k); v != nil {
			return k, v
		}
	}
	return nil, nil
}

func decodeBaseline(key string, raw []byte) (*model.Baseline, error) {
	var b model.Baseline
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrCorruptValue, key, err)
	}
	b.FillEmpty()
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrCorruptValue, key, err)
	}
	return &b, nil
}
