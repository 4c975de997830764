package fleet

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// Outbox keeps, across agent restarts, what this node learned for the fleet
// and has not seen applied, and the items it published (so a restart counts
// no item's node twice). *store.Bolt is one.
type Outbox interface {
	FleetOutbox() (map[string][]byte, error)
	UpdateFleetOutbox(put map[string][]byte, del []string) error
}

// publishedSuffix keys a profile's published items apart from its batches:
// they are large (every gram) and change only when a batch brings new ones.
const publishedSuffix = "\x00published"

type savedProfile struct {
	Epoch   uint64          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	Sealed  []savedBatch    `json:"sealed,omitempty"`
	Pending *model.Baseline `json:"pending,omitempty"`
}

type savedBatch struct {
	Seq   uint64          `json:"seq"`
	Delta *model.Baseline `json:"delta"`
	Fresh [][]string      `json:"fresh"`
}

// lists are the items by kind, sorted: a stable encoding.
func (it items) lists() [][]string {
	var out [][]string
	for _, kind := range it.kinds() {
		out = append(out, slices.Sorted(maps.Keys(kind)))
	}
	return out
}

func itemsFromLists(ls [][]string) items {
	it := newItems()
	for i, kind := range it.kinds() {
		if i < len(ls) {
			for _, k := range ls[i] {
				kind[k] = true
			}
		}
	}
	return it
}

// restore reads the outbox into the profiles; New calls it before anything runs.
func (c *Client) restore() error {
	saved, err := c.cfg.Outbox.FleetOutbox()
	if err != nil {
		return err
	}
	for key, raw := range saved {
		if strings.HasSuffix(key, publishedSuffix) {
			continue
		}
		var sp savedProfile
		if err := json.Unmarshal(raw, &sp); err != nil {
			return fmt.Errorf("fleet outbox, profile %q: %w", key, err)
		}
		p := c.profileLocked(key)
		p.epoch, p.seq, p.pending = sp.Epoch, sp.Seq, sp.Pending
		if p.pending != nil {
			p.pending.FillEmpty()
		}
		for _, b := range sp.Sealed {
			if b.Delta == nil {
				return fmt.Errorf("fleet outbox, profile %q: batch %d without a delta", key, b.Seq)
			}
			b.Delta.FillEmpty()
			p.sealed = append(p.sealed, &batch{seq: b.Seq, delta: b.Delta, fresh: itemsFromLists(b.Fresh)})
		}
		if raw, ok := saved[key+publishedSuffix]; ok {
			var ls [][]string
			if err := json.Unmarshal(raw, &ls); err != nil {
				return fmt.Errorf("fleet outbox, profile %q published items: %w", key, err)
			}
			p.published = itemsFromLists(ls)
		}
	}
	return nil
}

// SaveOutbox writes the profiles changed since the last save; Run calls it
// after every round and Close once more.
func (c *Client) SaveOutbox() error {
	if c.cfg.Outbox == nil {
		return nil
	}
	put := map[string][]byte{}
	type gens struct{ state, pub uint64 }
	saved := map[string]gens{}
	c.mu.Lock()
	for key, p := range c.profiles {
		saved[key] = gens{p.stateGen, p.pubGen}
		if p.stateGen != p.savedState {
			sp := savedProfile{Epoch: p.epoch, Seq: p.seq, Pending: p.pending}
			for _, b := range p.sealed {
				sp.Sealed = append(sp.Sealed, savedBatch{Seq: b.seq, Delta: b.delta, Fresh: b.fresh.lists()})
			}
			raw, err := json.Marshal(sp) // under the lock: learning changes pending
			if err != nil {
				c.mu.Unlock()
				return fmt.Errorf("fleet outbox, profile %q: %w", key, err)
			}
			put[key] = raw
		}
		if p.pubGen != p.savedPub {
			raw, err := json.Marshal(p.published.lists())
			if err != nil {
				c.mu.Unlock()
				return fmt.Errorf("fleet outbox, profile %q: %w", key, err)
			}
			put[key+publishedSuffix] = raw
		}
	}
	c.mu.Unlock()
	if len(put) == 0 {
		return nil
	}
	start := time.Now()
	if err := c.cfg.Outbox.UpdateFleetOutbox(put, nil); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range put {
		name := strings.TrimSuffix(key, publishedSuffix)
		if p := c.profiles[name]; p != nil {
			// What changed while writing is written next time.
			if strings.HasSuffix(key, publishedSuffix) {
				p.savedPub = saved[name].pub
			} else {
				p.savedState = saved[name].state
			}
		}
	}
	c.log.Debug("fleet: outbox saved", "profiles", len(put), "took", time.Since(start))
	return nil
}
