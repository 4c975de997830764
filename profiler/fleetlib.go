package profiler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/fleet"
)

// Fleet is what the library needs of the fleet client (profiler/fleet, #17):
// the view the agent decides with, and where learning goes besides the store.
type Fleet interface {
	// View is the fleet's baseline of a profile; false: none yet (etcd never
	// reached), and the local baseline decides.
	View(key string) (*model.Baseline, bool)
	// Update applies a learning change to the node's unpublished delta.
	Update(c model.Container, fn func(b *model.Baseline))
	// OfferPrior offers a new tag's baseline started from its previous tag's
	// (model.NewPriorBaseline): the fleet starts the tag from it if no node
	// did yet, once. trusted: taken from the fleet's view, not this node's.
	OfferPrior(b *model.Baseline, trusted bool)
}

// SetFleet makes the fleet's view decide (state, calibration, scoring,
// learned exceptions) for every profile it has one of. The local store keeps
// what this node learned.
func (l *Library) SetFleet(f Fleet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fleet = f
}

// share mirrors a learning change into the fleet. fn must change b only: it
// runs once more than the local change.
func (l *Library) share(c model.Container, fn func(b *model.Baseline)) {
	l.mu.Lock()
	f := l.fleet
	l.mu.Unlock()
	if f != nil {
		f.Update(c, fn)
	}
}

// fleetView is the fleet's baseline of key, if any; l.mu is held.
func (l *Library) fleetView(key string) (*model.Baseline, bool) {
	if l.fleet == nil {
		return nil, false
	}
	return l.fleet.View(key)
}

// FleetControl is the control socket's service when the agent runs in a
// fleet: baseline promote, reset and import act locally, then on every node
// through etcd; status carries the fleet's figures.
type FleetControl struct {
	Control
	Fleet *fleet.Client
}

// fleetErr: the local action stood, the fleet's did not.
func fleetErr(action, key string, err error) error {
	if err == nil || errors.Is(err, fleet.ErrUnknownProfile) {
		return nil // the fleet never learned it: nothing to change there
	}
	return fmt.Errorf("%s %s: done on this node, not in the fleet: %w", action, key, err)
}

// Promote marks the profile stable here and on every node.
func (c FleetControl) Promote(ctx context.Context, key string) error {
	if err := c.Control.Promote(ctx, key); err != nil {
		return err
	}
	return fleetErr("promote", key, c.Fleet.Promote(ctx, model.FamiliarRef(key)))
}

// Reset forgets the profile here and on every node.
func (c FleetControl) Reset(ctx context.Context, key string) error {
	if err := c.Control.Reset(ctx, key); err != nil {
		return err
	}
	return fleetErr("reset", key, c.Fleet.Reset(ctx, model.FamiliarRef(key)))
}

// Import writes the baselines here, then into the fleet.
func (c FleetControl) Import(ctx context.Context, bs []*model.Baseline, merge bool) error {
	if err := c.Control.Import(ctx, bs, merge); err != nil {
		return err
	}
	var errs []error
	for _, b := range bs {
		b = b.Clone()
		b.Image = model.FamiliarImage(b.Image) // keyed as the library keys it
		errs = append(errs, fleetErr("import", b.Key(), c.Fleet.Import(ctx, b, merge)))
	}
	return errors.Join(errs...)
}

// Status adds the fleet's figures to each image and the etcd link.
func (c FleetControl) Status(ctx context.Context) (control.Status, error) {
	st, err := c.Control.Status(ctx)
	if err != nil {
		return st, err
	}
	fs := c.Fleet.Status()
	st.Fleet = &control.FleetStatus{Node: fs.Node, Endpoints: fs.Endpoints, Connected: fs.Connected, LastPublish: fs.LastPublish}
	// status is the DaemonSet's liveness probe: an etcd outage must not
	// slow it, so the node list is asked for only while etcd answers, briefly.
	if fs.Connected {
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		nodes, err := c.Fleet.Nodes(nctx)
		cancel()
		if err == nil {
			st.Fleet.Nodes, st.Fleet.AliveNodes = &nodes.Published, &nodes.Alive
			st.Fleet.StaleNodes, st.Fleet.StaleCount = nodes.Stale, nodes.StaleN
		}
	}
	for _, p := range fs.Profiles {
		f := &control.ImageFleet{Nodes: p.Nodes, Windows: p.Windows, State: p.State, PendingWindows: p.PendingWindows, LastPublish: p.LastPublish}
		i := slices.IndexFunc(st.Images, func(is control.ImageStatus) bool { return is.Image == p.Key })
		if i < 0 { // learned elsewhere only: not in the local store yet
			st.Images = append(st.Images, control.ImageStatus{Image: p.Key, State: p.State})
			i = len(st.Images) - 1
		}
		st.Images[i].Fleet = f
		// The fleet's prior is the one that counts (a node that never ran
		// the old tag has none of its own).
		if p.Prior != nil {
			st.Images[i].CarriedFrom = carriedFrom(p.Prior)
		}
	}
	slices.SortFunc(st.Images, func(a, b control.ImageStatus) int { return strings.Compare(a.Image, b.Image) })
	return st, nil
}
