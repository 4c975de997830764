package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketFleet keeps, per profile key, what this node learned for the fleet
// (#17) and has not yet seen applied in etcd, so an agent restarted during
// an etcd outage still publishes it, once. Values are the fleet package's
// own encoding. An additive bucket: the schema version stays.
var bucketFleet = []byte("fleet_outbox")

// FleetOutbox returns every profile's saved fleet state.
func (s *Bolt) FleetOutbox() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFleet).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...) // valid only inside the transaction
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the fleet outbox: %w", err)
	}
	return out, nil
}

// UpdateFleetOutbox writes put and removes del in one transaction.
func (s *Bolt) UpdateFleetOutbox(put map[string][]byte, del []string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFleet)
		for _, k := range del {
			if err := b.Delete([]byte(k)); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		for k, v := range put {
			if err := b.Put([]byte(k), v); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the fleet outbox: %w", err)
	}
	return nil
}
