// Package control serves the running agent's baselines to the CLI over a local
// unix socket (mode 0600), because the agent holds the bbolt file's lock.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/store"
)

// Service is what the CLI needs from baselines, whether it talks to a running
// agent over its control socket (Client) or opens the store itself (the agent's
// baseline library).
type Service interface {
	List(ctx context.Context) ([]*model.Baseline, error)
	Get(ctx context.Context, key string) (*model.Baseline, error)
	// Import writes all baselines or none; merge folds each into the existing one.
	Import(ctx context.Context, bs []*model.Baseline, merge bool) error
	Promote(ctx context.Context, key string) error
	Reset(ctx context.Context, key string) error
	Status(ctx context.Context) (Status, error)
}

// Status is what `cagewatch status` prints.
type Status struct {
	AgentRunning bool   `json:"agent_running"`
	Mode         string `json:"mode,omitempty"`
	// Key is what baselines belong to (learning.key): "image" or "workload".
	Key    string        `json:"key"`
	Images []ImageStatus `json:"images"`
	// Fleet is the etcd connection (#17); nil when the agent learns alone.
	Fleet *FleetStatus `json:"fleet,omitempty"`
}

// FleetStatus is what `cagewatch fleet status` shows of the agent's etcd link.
type FleetStatus struct {
	Node        string    `json:"node"`
	Endpoints   []string  `json:"endpoints"`
	Connected   bool      `json:"connected"`
	LastPublish time.Time `json:"last_publish,omitzero"`
	// Nodes that published in the fleet, those with a live lease, and the
	// stale ones (published, lease lapsed: their learning still counts);
	// absent when etcd did not answer.
	Nodes      *int     `json:"nodes,omitempty"`
	AliveNodes *int     `json:"alive_nodes,omitempty"`
	StaleNodes []string `json:"stale_nodes,omitempty"` // the first 50
	StaleCount int      `json:"stale_count,omitempty"`
}

// ImageFleet is one profile's fleet baseline: Windows counts every node's.
type ImageFleet struct {
	Nodes          int                 `json:"nodes"`
	Windows        uint64              `json:"windows"`
	State          model.BaselineState `json:"state,omitempty"`
	PendingWindows uint64              `json:"pending_windows"` // learned here, not yet published
	LastPublish    time.Time           `json:"last_publish,omitzero"`
}

// ImageStatus is one baseline's learning state and progress.
type ImageStatus struct {
	// Image is the baseline's profile key: the image reference, or the
	// workload under learning.key: workload, whose image is then ImageRef.
	Image    string              `json:"image"`
	ImageRef string              `json:"image_ref,omitempty"`
	State    model.BaselineState `json:"state"`
	Progress model.Progress      `json:"progress"`
	Updated  time.Time           `json:"updated"`
	// VulnsInUse counts the image's distinct vulnerabilities in packages that
	// run, by severity, from its last imported scanner report (#18).
	VulnsInUse map[string]int `json:"vulnerabilities_in_use,omitempty"`
	// Vulns counts all of them, running or not.
	Vulns map[string]int `json:"vulnerabilities,omitempty"`
	// Fleet is the profile's fleet baseline (#17), when the agent has one.
	Fleet *ImageFleet `json:"fleet,omitempty"`
	// CarriedFrom: the baseline started from another tag's (an image upgrade).
	CarriedFrom *CarriedFrom `json:"carried_from,omitempty"`
}

// CarriedFrom is where a new tag's baseline started from.
type CarriedFrom struct {
	Profile string    `json:"profile"`
	Windows uint64    `json:"windows"`
	Outcome string    `json:"outcome"` // "" (judged after the tag's first block), matched or rejected
	Why     string    `json:"why,omitempty"`
	At      time.Time `json:"at"`
}

// SocketPath is where the agent listens for a given store file.
func SocketPath(storePath string) string {
	return filepath.Join(filepath.Dir(storePath), "cagewatch.sock")
}

// Serve answers Service calls on a unix socket until ctx is done.
func Serve(ctx context.Context, socket string, svc Service, images ImageService, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	if err := removeStaleSocket(socket); err != nil {
		return err
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	srv := &http.Server{Handler: handler(svc, images, log), ReadHeaderTimeout: 5 * time.Second}
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	})
	defer os.Remove(socket)
	err = srv.Serve(ln)
	if !stop() {
		<-shutdownDone // requests in flight finish before the caller closes the store
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	return nil
}

// removeStaleSocket deletes a socket file left by an agent that died, but refuses
// to steal the socket of one that still answers.
func removeStaleSocket(socket string) error {
	fi, err := os.Lstat(socket)
	if err != nil {
		return nil
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket", socket)
	}
	if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another agent is serving it", socket)
	}
	return os.Remove(socket)
}

const maxImportBytes = 256 << 20

func handler(svc Service, images ImageService, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	if images != nil {
		imageHandlers(mux, images, log)
	}
	mux.HandleFunc("GET /v1/baselines", func(w http.ResponseWriter, r *http.Request) {
		if key := r.URL.Query().Get("image"); key != "" {
			b, err := svc.Get(r.Context(), key)
			reply(w, log, b, err)
			return
		}
		bs, err := svc.List(r.Context())
		reply(w, log, bs, err)
	})
	mux.HandleFunc("POST /v1/baselines/import", func(w http.ResponseWriter, r *http.Request) {
		bs, err := store.Import(http.MaxBytesReader(w, r.Body, maxImportBytes))
		if err == nil {
			err = svc.Import(r.Context(), bs, r.URL.Query().Get("merge") == "true")
		}
		reply(w, log, map[string]int{"imported": len(bs)}, err)
	})
	mux.HandleFunc("POST /v1/baselines/promote", func(w http.ResponseWriter, r *http.Request) {
		reply(w, log, struct{}{}, svc.Promote(r.Context(), r.URL.Query().Get("image")))
	})
	mux.HandleFunc("POST /v1/baselines/reset", func(w http.ResponseWriter, r *http.Request) {
		reply(w, log, struct{}{}, svc.Reset(r.Context(), r.URL.Query().Get("image")))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := svc.Status(r.Context())
		reply(w, log, st, err)
	})
	return mux
}

type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
}

func reply(w http.ResponseWriter, log *slog.Logger, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status, kind := http.StatusInternalServerError, ""
		switch {
		case errors.Is(err, store.ErrNotFound):
			status, kind = http.StatusNotFound, "not_found"
		case errors.Is(err, store.ErrBadImport), errors.Is(err, model.ErrImageMismatch), errors.Is(err, ErrBadImage):
			status, kind = http.StatusBadRequest, "bad_import"
		default:
			log.Warn("control request failed", "err", err)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(errorBody{Error: err.Error(), Kind: kind})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Client is a Service backed by a running agent.
type Client struct {
	socket string
	http   *http.Client
}

// Dial connects to the agent's socket, failing fast when no agent listens.
func Dial(socket string) (*Client, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (c *Client) call(ctx context.Context, method, path string, query url.Values, body io.Reader, out any) error {
	u := "http://agent" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		switch e.Kind {
		case "not_found":
			return fmt.Errorf("%w (%s)", store.ErrNotFound, e.Error)
		case "bad_import":
			return fmt.Errorf("%w (%s)", store.ErrBadImport, e.Error)
		}
		return fmt.Errorf("agent: %s: %s", resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("agent reply to %s: %w", path, err)
	}
	return nil
}

// List implements Service.
func (c *Client) List(ctx context.Context) ([]*model.Baseline, error) {
	var bs []*model.Baseline
	return bs, c.call(ctx, http.MethodGet, "/v1/baselines", nil, nil, &bs)
}

// Get implements Service.
func (c *Client) Get(ctx context.Context, key string) (*model.Baseline, error) {
	var b model.Baseline
	if err := c.call(ctx, http.MethodGet, "/v1/baselines", url.Values{"image": {key}}, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Import implements Service.
func (c *Client) Import(ctx context.Context, bs []*model.Baseline, merge bool) error {
	var buf bytes.Buffer
	if err := store.Export(&buf, bs, time.Now()); err != nil {
		return fmt.Errorf("%w: %v", store.ErrBadImport, err)
	}
	q := url.Values{}
	if merge {
		q.Set("merge", "true")
	}
	return c.call(ctx, http.MethodPost, "/v1/baselines/import", q, &buf, nil)
}

// Promote implements Service.
func (c *Client) Promote(ctx context.Context, key string) error {
	return c.call(ctx, http.MethodPost, "/v1/baselines/promote", url.Values{"image": {key}}, nil, nil)
}

// Reset implements Service.
func (c *Client) Reset(ctx context.Context, key string) error {
	return c.call(ctx, http.MethodPost, "/v1/baselines/reset", url.Values{"image": {key}}, nil, nil)
}

// Status implements Service.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.call(ctx, http.MethodGet, "/v1/status", nil, nil, &st)
}
