package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// socketPath returns a path for a unix socket in a fresh temp dir. Unix socket
// paths are limited to 108 bytes, so a long TMPDIR plus a long test name falls
// back to a short directory.
func socketPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "cw")
	if err != nil {
		t.Fatalf("creating socket dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// fakeDocker serves the two Engine API endpoints DockerClient uses.
type fakeDocker struct {
	containers map[string]string // container id → /containers/{id}/json body
	images     map[string]string // image id → /images/{id}/json body
	status     int               // when non-zero, every request answers with it

	mu       sync.Mutex
	requests []string
}

func (f *fakeDocker) handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(kind string, bodies map[string]string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.requests = append(f.requests, r.URL.Path)
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			if f.status != 0 {
				w.WriteHeader(f.status)
				fmt.Fprintf(w, `{"message":"%s"}`, http.StatusText(f.status))
				return
			}
			body, ok := bodies[r.PathValue("id")]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"message":"No such %s: %s"}`, kind, r.PathValue("id"))
				return
			}
			fmt.Fprint(w, body)
		}
	}
	mux.HandleFunc("GET /containers/{id}/json", serve("container", f.containers))
	mux.HandleFunc("GET /images/{id}/json", serve("image", f.images))
	return mux
}

func (f *fakeDocker) paths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// serveDocker starts f on a unix socket and returns the socket's path.
func serveDocker(t *testing.T, f *fakeDocker) string {
	t.Helper()
	sock := socketPath(t, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %s: %v", sock, err)
	}
	srv := httptest.NewUnstartedServer(f.handler())
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// dockerContainerJSON is a trimmed GET /containers/{id}/json answer, with the
// fields the client ignores kept so that decoding must skip them.
func dockerContainerJSON(t *testing.T, id, name, image, configImage string, labels map[string]string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"Id":      id,
		"Created": "2025-05-01T10:00:00.123456789Z",
		"Path":    "sleep",
		"Args":    []string{"3600"},
		"State":   map[string]any{"Status": "running", "Running": true, "Pid": 4242},
		"Image":   image,
		"Name":    name,
		"Driver":  "overlay2",
		"HostConfig": map[string]any{
			"CgroupParent": "",
			"NetworkMode":  "bridge",
		},
		"Config": map[string]any{
			"Hostname":   id[:12],
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":        []string{"sleep", "3600"},
			"Image":      configImage,
			"WorkingDir": "",
			"Labels":     labels,
		},
	})
	if err != nil {
		t.Fatalf("encoding container: %v", err)
	}
	return string(b)
}

// dockerImageJSON is a trimmed GET /images/{id}/json answer.
func dockerImageJSON(t *testing.T, id string, repoTags, repoDigests []string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"Id":          id,
		"RepoTags":    repoTags,
		"RepoDigests": repoDigests,
		"Created":     "2025-04-01T00:00:00Z",
		"Size":        1234567,
		"Os":          "linux",
	})
	if err != nil {
		t.Fatalf("encoding image: %v", err)
	}
	return string(b)
}

func TestDockerClientInspect(t *testing.T) {
	const sha = "sha256:" + imageID
	containerPath := "/containers/" + ctrID + "/json"
	imagePath := "/images/" + sha + "/json"
	tests := []struct {
		name        string
		configImage string
		labels      map[string]string
		images      map[string]string
		want        Metadata
		wantPaths   []string
	}{
		{
			name:        "tagged image",
			configImage: "cagewatch/busybox:1",
			want:        Metadata{Name: "cw1", Image: "cagewatch/busybox", ImageTag: "1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "untagged reference defaults to latest",
			configImage: "busybox",
			want:        Metadata{Name: "cw1", Image: "busybox", ImageTag: "latest", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "registry with port and tag",
			configImage: "registry:5000/team/app:2.1",
			want:        Metadata{Name: "cw1", Image: "registry:5000/team/app", ImageTag: "2.1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "registry with port without tag defaults to latest",
			configImage: "registry:5000/team/app",
			want:        Metadata{Name: "cw1", Image: "registry:5000/team/app", ImageTag: "latest", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "pinned by digest only has no tag",
			configImage: "busybox@sha256:" + digest,
			want:        Metadata{Name: "cw1", Image: "busybox", ImageTag: "", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "tag and digest keeps the tag",
			configImage: "docker.io/library/busybox:1.36@sha256:" + digest,
			want:        Metadata{Name: "cw1", Image: "docker.io/library/busybox", ImageTag: "1.36", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
		{
			name:        "started by sha256 image id falls back to first RepoTag",
			configImage: sha,
			images: map[string]string{
				sha: dockerImageJSON(t, sha, []string{"cagewatch/busybox:1", "cagewatch/busybox:stable"}, nil),
			},
			want:      Metadata{Name: "cw1", Image: "cagewatch/busybox", ImageTag: "1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths: []string{containerPath, imagePath},
		},
		{
			name:        "started by bare hex image id falls back to first RepoTag",
			configImage: imageID,
			images: map[string]string{
				sha: dockerImageJSON(t, sha, []string{"registry:5000/team/app:2.1"}, nil),
			},
			want:      Metadata{Name: "cw1", Image: "registry:5000/team/app", ImageTag: "2.1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths: []string{containerPath, imagePath},
		},
		{
			name:        "empty config image falls back to RepoTag",
			configImage: "",
			images: map[string]string{
				sha: dockerImageJSON(t, sha, []string{"cagewatch/busybox:1"}, nil),
			},
			want:      Metadata{Name: "cw1", Image: "cagewatch/busybox", ImageTag: "1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths: []string{containerPath, imagePath},
		},
		{
			name:        "image id without tags falls back to RepoDigest",
			configImage: sha,
			images: map[string]string{
				sha: dockerImageJSON(t, sha, []string{}, []string{"cagewatch/busybox@sha256:" + digest}),
			},
			want:      Metadata{Name: "cw1", Image: "cagewatch/busybox", ImageTag: "", ImageID: sha, Entrypoint: "sleep"},
			wantPaths: []string{containerPath, imagePath},
		},
		{
			name:        "image id without tags or digests has no image name",
			configImage: sha,
			images: map[string]string{
				sha: dockerImageJSON(t, sha, nil, nil),
			},
			want:      Metadata{Name: "cw1", Image: "", ImageTag: "", ImageID: sha, Entrypoint: "sleep"},
			wantPaths: []string{containerPath, imagePath},
		},
		{
			name:        "image id whose image is gone has no image name",
			configImage: sha,
			images:      map[string]string{},
			want:        Metadata{Name: "cw1", Image: "", ImageTag: "", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath, imagePath},
		},
		{
			name:        "kubernetes labels",
			configImage: "docker.io/library/nginx:1.27",
			labels: map[string]string{
				"io.kubernetes.pod.name":       "web-7d9f8c6b5-x2k4q",
				"io.kubernetes.pod.namespace":  "prod",
				"io.kubernetes.container.name": "nginx",
				"io.kubernetes.pod.uid":        podUID,
			},
			want: Metadata{
				Name: "cw1", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web", Entrypoint: "sleep",
			},
			wantPaths: []string{containerPath},
		},
		{
			name:        "unrelated labels leave pod fields empty",
			configImage: "cagewatch/busybox:1",
			labels:      map[string]string{"com.docker.compose.project": "demo"},
			want:        Metadata{Name: "cw1", Image: "cagewatch/busybox", ImageTag: "1", ImageID: sha, Entrypoint: "sleep"},
			wantPaths:   []string{containerPath},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeDocker{
				containers: map[string]string{
					ctrID: dockerContainerJSON(t, ctrID, "/cw1", sha, tt.configImage, tt.labels),
				},
				images: tt.images,
			}
			c := NewDockerClient(serveDocker(t, f))
			got, err := c.Inspect(context.Background(), ctrID)
			if err != nil {
				t.Fatalf("Inspect(%s) error = %v", ctrID[:12], err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Inspect() = %+v\nwant        %+v", got, tt.want)
			}
			if gotPaths := f.paths(); !slices.Equal(gotPaths, tt.wantPaths) {
				t.Errorf("requests = %q, want %q", gotPaths, tt.wantPaths)
			}
		})
	}
}

func TestDockerClientInspectErrors(t *testing.T) {
	const sha = "sha256:" + imageID
	tests := []struct {
		name         string
		fake         *fakeDocker // nil: no server on the socket
		id           string
		wantIs       error
		wantNotIs    error
		wantContains []string
	}{
		{
			name:   "unknown container is ErrNotFound",
			fake:   &fakeDocker{containers: map[string]string{}},
			id:     ctrID,
			wantIs: ErrNotFound,
		},
		{
			name:         "server error",
			fake:         &fakeDocker{status: http.StatusInternalServerError},
			id:           ctrID,
			wantNotIs:    ErrNotFound,
			wantContains: []string{"/containers/" + ctrID + "/json", "500"},
		},
		{
			name:         "malformed json",
			fake:         &fakeDocker{containers: map[string]string{ctrID: `{"Id": "` + ctrID + `", "Name": `}},
			id:           ctrID,
			wantNotIs:    ErrNotFound,
			wantContains: []string{"decoding"},
		},
		{
			name:         "wrong json shape",
			fake:         &fakeDocker{containers: map[string]string{ctrID: `{"Id": "x", "Config": {"Labels": ["not", "a", "map"]}, "Image": "` + sha + `"}`}},
			id:           ctrID,
			wantNotIs:    ErrNotFound,
			wantContains: []string{"decoding"},
		},
		{
			name:         "socket missing",
			fake:         nil,
			id:           ctrID,
			wantNotIs:    ErrNotFound,
			wantContains: []string{"docker.sock"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sock string
			if tt.fake != nil {
				sock = serveDocker(t, tt.fake)
			} else {
				sock = socketPath(t, "docker.sock")
			}
			got, err := NewDockerClient(sock).Inspect(context.Background(), tt.id)
			if err == nil {
				t.Fatalf("Inspect() = %+v, want error", got)
			}
			if !reflect.DeepEqual(got, Metadata{}) {
				t.Errorf("Inspect() returned %+v alongside error, want zero Metadata", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Inspect() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantNotIs != nil && errors.Is(err, tt.wantNotIs) {
				t.Errorf("Inspect() error = %v, must not be %v", err, tt.wantNotIs)
			}
			for _, s := range tt.wantContains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Inspect() error %q should mention %q", err, s)
				}
			}
			if tt.fake == nil && !strings.Contains(err.Error(), sock) {
				t.Errorf("Inspect() error %q should name the socket %s", err, sock)
			}
		})
	}
}

func TestDockerClientInspectCanceledContext(t *testing.T) {
	f := &fakeDocker{containers: map[string]string{
		ctrID: dockerContainerJSON(t, ctrID, "/cw1", "sha256:"+imageID, "cagewatch/busybox:1", nil),
	}}
	c := NewDockerClient(serveDocker(t, f))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Inspect(ctx, ctrID); !errors.Is(err, context.Canceled) {
		t.Errorf("Inspect(canceled ctx) error = %v, want context.Canceled", err)
	}
	if n := len(f.paths()); n != 0 {
		t.Errorf("server saw %d requests for a canceled context, want 0", n)
	}
}
