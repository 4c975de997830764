package container

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime answers ContainerStatus from a table, like containerd or CRI-O would.
type fakeRuntime struct {
	cri.UnimplementedRuntimeServiceServer
	statuses map[string]*cri.ContainerStatus
	err      error // when set, every ContainerStatus fails with it

	mu    sync.Mutex
	calls []string
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, req *cri.ContainerStatusRequest) (*cri.ContainerStatusResponse, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req.GetContainerId())
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	st, ok := f.statuses[req.GetContainerId()]
	if !ok {
		// containerd's wording for an unknown id.
		return nil, status.Errorf(codes.NotFound, "an error occurred when try to find container %q: not found", req.GetContainerId())
	}
	return &cri.ContainerStatusResponse{Status: st}, nil
}

func (f *fakeRuntime) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakeImages answers ImageStatus from a table keyed by the requested image.
type fakeImages struct {
	cri.UnimplementedImageServiceServer
	images map[string]*cri.Image
	err    error // when set, every ImageStatus fails with it

	mu    sync.Mutex
	calls []string
}

func (f *fakeImages) ImageStatus(_ context.Context, req *cri.ImageStatusRequest) (*cri.ImageStatusResponse, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req.GetImage().GetImage())
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	// A CRI runtime answers an unknown image with an empty response, not an error.
	return &cri.ImageStatusResponse{Image: f.images[req.GetImage().GetImage()]}, nil
}

func (f *fakeImages) requested() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// serveCRI serves rt and img over gRPC on a unix socket and returns its path.
func serveCRI(t *testing.T, rt *fakeRuntime, img *fakeImages) string {
	t.Helper()
	sock := socketPath(t, "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %s: %v", sock, err)
	}
	srv := grpc.NewServer()
	cri.RegisterRuntimeServiceServer(srv, rt)
	cri.RegisterImageServiceServer(srv, img)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

func newTestCRIClient(t *testing.T, sock string) *CRIClient {
	t.Helper()
	c, err := NewCRIClient(sock)
	if err != nil {
		t.Fatalf("NewCRIClient(%s) error = %v", sock, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kubeStatus is a ContainerStatus shaped like the one containerd returns for a pod container.
func kubeStatus(image, imageRef string, labels map[string]string) *cri.ContainerStatus {
	return &cri.ContainerStatus{
		Id:       ctrID,
		Metadata: &cri.ContainerMetadata{Name: "nginx", Attempt: 0},
		State:    cri.ContainerState_CONTAINER_RUNNING,
		Image:    &cri.ImageSpec{Image: image},
		ImageRef: imageRef,
		Labels:   labels,
	}
}

func TestCRIClientInspect(t *testing.T) {
	const sha = "sha256:" + imageID
	kubeLabels := map[string]string{
		"io.kubernetes.container.name": "web",
		"io.kubernetes.pod.name":       "web-7d9f8c6b5-x2k4q",
		"io.kubernetes.pod.namespace":  "prod",
		"io.kubernetes.pod.uid":        podUID,
	}
	nginx := &cri.Image{
		Id:          sha,
		RepoTags:    []string{"docker.io/library/nginx:1.27", "docker.io/library/nginx:stable"},
		RepoDigests: []string{"docker.io/library/nginx@sha256:" + digest},
	}
	tests := []struct {
		name          string
		status        *cri.ContainerStatus
		images        map[string]*cri.Image
		imagesErr     error
		want          Metadata
		wantImageReqs []string
	}{
		{
			name:   "tagged image with kubernetes labels",
			status: kubeStatus("docker.io/library/nginx:1.27", sha, kubeLabels),
			want: Metadata{
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:   "image ref as repo digest",
			status: kubeStatus("docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:"+digest, kubeLabels),
			want: Metadata{
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: "docker.io/library/nginx@sha256:" + digest,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:   "registry with port",
			status: kubeStatus("registry.local:5000/team/app:2.1", sha, kubeLabels),
			want: Metadata{
				Name: "web", Image: "registry.local:5000/team/app", ImageTag: "2.1", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:   "pinned by digest only has no tag",
			status: kubeStatus("docker.io/library/nginx@sha256:"+digest, sha, kubeLabels),
			want: Metadata{
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:   "no container name label falls back to metadata name",
			status: kubeStatus("docker.io/library/nginx:1.27", sha, nil),
			want:   Metadata{Name: "nginx", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: sha},
		},
		{
			name:          "image reported as sha256 id resolved through ImageStatus",
			status:        kubeStatus(sha, sha, kubeLabels),
			images:        map[string]*cri.Image{sha: nginx},
			wantImageReqs: []string{sha},
			want: Metadata{
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:          "image reported as bare hex id resolved through ImageStatus",
			status:        kubeStatus(imageID, sha, kubeLabels),
			images:        map[string]*cri.Image{imageID: nginx},
			wantImageReqs: []string{imageID},
			want: Metadata{
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:          "image id without tags has no image name",
			status:        kubeStatus(sha, sha, kubeLabels),
			images:        map[string]*cri.Image{sha: {Id: sha, RepoDigests: nginx.RepoDigests}},
			wantImageReqs: []string{sha},
			want: Metadata{
				Name: "web", Image: "", ImageTag: "", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:          "image service error leaves the image name empty",
			status:        kubeStatus(sha, sha, kubeLabels),
			imagesErr:     status.Error(codes.Unavailable, "image service down"),
			wantImageReqs: []string{sha},
			want: Metadata{
				Name: "web", Image: "", ImageTag: "", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
		{
			name:          "image id unknown to the image service has no image name",
			status:        kubeStatus(sha, sha, kubeLabels),
			images:        map[string]*cri.Image{},
			wantImageReqs: []string{sha},
			want: Metadata{
				Name: "web", Image: "", ImageTag: "", ImageID: sha,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodOwner: "web",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{statuses: map[string]*cri.ContainerStatus{ctrID: tt.status}}
			img := &fakeImages{images: tt.images, err: tt.imagesErr}
			c := newTestCRIClient(t, serveCRI(t, rt, img))
			got, err := c.Inspect(context.Background(), ctrID)
			if err != nil {
				t.Fatalf("Inspect(%s) error = %v", ctrID[:12], err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Inspect() = %+v\nwant        %+v", got, tt.want)
			}
			if calls := rt.seen(); !slices.Equal(calls, []string{ctrID}) {
				t.Errorf("ContainerStatus calls = %q, want [%s]", calls, ctrID)
			}
			if reqs := img.requested(); !slices.Equal(reqs, tt.wantImageReqs) {
				t.Errorf("ImageStatus requests = %q, want %q", reqs, tt.wantImageReqs)
			}
		})
	}
}

func TestCRIClientInspectErrors(t *testing.T) {
	tests := []struct {
		name         string
		rt           *fakeRuntime // nil: no server on the socket
		wantIs       error
		wantCode     codes.Code
		wantContains []string
	}{
		{
			name:   "not found is ErrNotFound",
			rt:     &fakeRuntime{statuses: map[string]*cri.ContainerStatus{}},
			wantIs: ErrNotFound,
		},
		{
			name:         "internal error",
			rt:           &fakeRuntime{err: status.Error(codes.Internal, "boltdb: database not open")},
			wantCode:     codes.Internal,
			wantContains: []string{"ContainerStatus", ctrID, "cri.sock", "database not open"},
		},
		{
			name:         "unimplemented runtime",
			rt:           &fakeRuntime{err: status.Error(codes.Unimplemented, "unknown service runtime.v1.RuntimeService")},
			wantCode:     codes.Unimplemented,
			wantContains: []string{"ContainerStatus", ctrID, "cri.sock"},
		},
		{
			name:         "socket missing",
			rt:           nil,
			wantCode:     codes.Unavailable,
			wantContains: []string{"ContainerStatus", ctrID, "cri.sock"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sock string
			if tt.rt != nil {
				sock = serveCRI(t, tt.rt, &fakeImages{})
			} else {
				sock = socketPath(t, "cri.sock")
			}
			c := newTestCRIClient(t, sock)
			got, err := c.Inspect(context.Background(), ctrID)
			if err == nil {
				t.Fatalf("Inspect() = %+v, want error", got)
			}
			if !reflect.DeepEqual(got, Metadata{}) {
				t.Errorf("Inspect() returned %+v alongside error, want zero Metadata", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Inspect() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantIs == nil && errors.Is(err, ErrNotFound) {
				t.Errorf("Inspect() error = %v, must not be ErrNotFound", err)
			}
			if tt.wantCode != codes.OK {
				if code := status.Code(errors.Unwrap(err)); code != tt.wantCode {
					t.Errorf("wrapped gRPC code = %v, want %v (error %v)", code, tt.wantCode, err)
				}
			}
			for _, s := range tt.wantContains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Inspect() error %q should mention %q", err, s)
				}
			}
			if tt.rt == nil && !strings.Contains(err.Error(), sock) {
				t.Errorf("Inspect() error %q should name the socket %s", err, sock)
			}
		})
	}
}
