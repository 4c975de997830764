package profiler

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/cagewatch/cagewatch/model"
)

// Recorder appends container windows to a JSON-lines file for `cagewatch replay`.
// When the file would pass maxBytes it is rotated to FILE.1 (the previous FILE.1
// is dropped), so at most about 2×maxBytes are kept.
type Recorder struct {
	path     string
	maxBytes int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenRecorder opens (appending) the record file.
func OpenRecorder(path string, maxBytes int64) (*Recorder, error) {
	r := &Recorder{path: path, maxBytes: maxBytes}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Recorder) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("record file: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Record appends the container windows of one sampling round with the live
// verdicts on them (nil when the agent does not score).
func (r *Recorder) Record(ws []model.Window, verdicts []model.WindowVerdict) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, w := range ws {
		if !w.Container.IsContainer() {
			continue
		}
		var live *model.LiveVerdict
		if verdicts != nil {
			live = verdicts[i].Recorded()
		}
		line, err := json.Marshal(model.Record(w, fmt.Sprintf("%d-%d", w.CgroupID, w.Start.UnixNano()), live))
		if err != nil {
			return err
		}
		line = append(line, '\n')
		if r.maxBytes > 0 && r.size+int64(len(line)) > r.maxBytes && r.size > 0 {
			if err := r.rotate(); err != nil {
				return err
			}
		}
		n, err := r.f.Write(line)
		r.size += int64(n)
		if err != nil {
			return fmt.Errorf("record file %s: %w", r.path, err)
		}
	}
	return nil
}

func (r *Recorder) rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("record file %s: %w", r.path, err)
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return fmt.Errorf("rotating record file %s: %w", r.path, err)
	}
	return r.open()
}

// Close closes the file.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
