package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// ErrNotFound means the runtime does not know the container (it may already be gone).
var ErrNotFound = errors.New("container not found")

// Metadata is what a runtime API adds to the id read off the cgroup path.
type Metadata struct {
	Name     string
	Image    string // repository
	ImageTag string
	ImageID  string
	PodName  string
	PodNS    string
	// PodLabels: the pod's app.kubernetes.io/* labels.
	PodLabels map[string]string
	// PodOwner: the pod's controller (model.PodOwner).
	PodOwner string
	// Entrypoint: the executable the container was started with.
	Entrypoint string
}

// DockerClient speaks the Docker Engine API over its unix socket.
type DockerClient struct {
	socket string
	http   *http.Client
}

// NewDockerClient returns a client for the Engine API at socket (e.g. /var/run/docker.sock).
func NewDockerClient(socket string) *DockerClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 2,
	}
	return &DockerClient{socket: socket, http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

type dockerContainer struct {
	ID     string `json:"Id"`
	Name   string `json:"Name"`
	Image  string `json:"Image"` // image id, sha256:…
	Path   string `json:"Path"`  // the entrypoint's executable, as given
	Config struct {
		Image  string            `json:"Image"` // as the user asked for it: repo:tag, or an id
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

type dockerImage struct {
	ID          string   `json:"Id"`
	RepoTags    []string `json:"RepoTags"`
	RepoDigests []string `json:"RepoDigests"`
}

func (c *DockerClient) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("docker API %s at %s: %w", path, c.socket, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("docker API %s: %w", path, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("docker API %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("docker API %s: decoding: %w", path, err)
	}
	return nil
}

// Inspect returns the container's name and image.
func (c *DockerClient) Inspect(ctx context.Context, id string) (Metadata, error) {
	var ct dockerContainer
	if err := c.get(ctx, "/containers/"+url.PathEscape(id)+"/json", &ct); err != nil {
		return Metadata{}, err
	}
	md := Metadata{Name: strings.TrimPrefix(ct.Name, "/"), ImageID: ct.Image}
	ref := ct.Config.Image
	if ref == "" || isImageID(ref, ct.Image) {
		// Started by image id: name it by the image's first tag, if any.
		var img dockerImage
		if err := c.get(ctx, "/images/"+url.PathEscape(ct.Image)+"/json", &img); err == nil {
			switch {
			case len(img.RepoTags) > 0:
				ref = img.RepoTags[0]
			case len(img.RepoDigests) > 0:
				ref = img.RepoDigests[0]
			}
		}
	}
	if isImageID(ref, ct.Image) {
		ref = "" // untagged: the image id (md.ImageID) names it
	}
	md.Image, md.ImageTag = model.SplitImageRef(ref)
	if md.Image != "" && md.ImageTag == "" && !strings.Contains(ref, "@") {
		md.ImageTag = "latest"
	}
	md.PodName = ct.Config.Labels["io.kubernetes.pod.name"]
	md.PodNS = ct.Config.Labels["io.kubernetes.pod.namespace"]
	md.PodOwner = model.PodOwner(md.PodName, ct.Config.Labels)
	md.Entrypoint = ct.Path
	return md, nil
}
