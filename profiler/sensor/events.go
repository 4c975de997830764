package sensor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/cagewatch/cagewatch/model"
)

// RecordReader is the part of *ringbuf.Reader the event loop uses; tests fake it.
type RecordReader interface {
	ReadInto(*ringbuf.Record) error
	Close() error
}

// ReadEvents decodes records from r and passes them to fn until ctx is done (then it
// closes r and returns nil) or r fails. Records that do not decode go to onBad and
// are counted by the caller, never silently dropped.
func ReadEvents(ctx context.Context, r RecordReader, dec Decoder, fn func(model.Event), onBad func(error)) error {
	stop := context.AfterFunc(ctx, func() { _ = r.Close() })
	defer stop()
	var rec ringbuf.Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("event ring buffer closed: %w", err)
			}
			return fmt.Errorf("reading event ring buffer: %w", err)
		}
		ev, err := dec.Decode(rec.RawSample)
		if err != nil {
			if onBad != nil {
				onBad(err)
			}
			continue
		}
		fn(ev)
	}
}
