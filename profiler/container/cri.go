package container

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cagewatch/cagewatch/model"
)

// CRIClient asks a CRI runtime (containerd, CRI-O) about containers over its socket.
type CRIClient struct {
	socket string
	conn   *grpc.ClientConn
	rt     cri.RuntimeServiceClient
	img    cri.ImageServiceClient
}

// NewCRIClient prepares a client; the connection is made lazily on first use.
func NewCRIClient(socket string) (*CRIClient, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", socket, err)
	}
	return &CRIClient{socket: socket, conn: conn, rt: cri.NewRuntimeServiceClient(conn), img: cri.NewImageServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *CRIClient) Close() error { return c.conn.Close() }

// Inspect returns the container's name, pod and image.
func (c *CRIClient) Inspect(ctx context.Context, id string) (Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return Metadata{}, fmt.Errorf("CRI container %s at %s: %w", id, c.socket, ErrNotFound)
		}
		return Metadata{}, fmt.Errorf("CRI ContainerStatus %s at %s: %w", id, c.socket, err)
	}
	st := resp.GetStatus()
	md := Metadata{
		Name:    st.GetLabels()["io.kubernetes.container.name"],
		ImageID: st.GetImageRef(),
		PodName: st.GetLabels()["io.kubernetes.pod.name"],
		PodNS:   st.GetLabels()["io.kubernetes.pod.namespace"],
	}
	if md.Name == "" {
		md.Name = st.GetMetadata().GetName()
	}
	ref := st.GetImage().GetImage()
	if ref == "" || isImageID(ref, st.GetImageRef()) {
		// Some runtimes report the image id here; the image service knows its tags.
		query := cmp.Or(ref, st.GetImageRef())
		if is, err := c.img.ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: query}}); err == nil {
			if tags := is.GetImage().GetRepoTags(); len(tags) > 0 {
				ref = tags[0]
			}
		}
	}
	if isImageID(ref, st.GetImageRef()) {
		ref = "" // untagged: the image id (md.ImageID) names it
	}
	md.Image, md.ImageTag = model.SplitImageRef(ref)
	sandboxLabels := c.sandboxLabels(ctx, id)
	md.PodLabels = appLabels(sandboxLabels)
	md.PodOwner = model.PodOwner(md.PodName, sandboxLabels)
	return md, nil
}

// sandboxLabels are the labels of the container's pod, which CRI keeps on the
// sandbox; nil when the sandbox is gone.
func (c *CRIClient) sandboxLabels(ctx context.Context, id string) map[string]string {
	list, err := c.rt.ListContainers(ctx, &cri.ListContainersRequest{Filter: &cri.ContainerFilter{Id: id}})
	if err != nil || len(list.GetContainers()) == 0 {
		return nil
	}
	sb, err := c.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: list.GetContainers()[0].GetPodSandboxId()})
	if err != nil {
		return nil
	}
	return sb.GetStatus().GetLabels()
}

// appLabels are the app.kubernetes.io/* labels among a pod's: only those, so
// the set stays bounded; nil when there are none.
func appLabels(all map[string]string) map[string]string {
	var labels map[string]string
	for k, v := range all {
		if strings.HasPrefix(k, "app.kubernetes.io/") {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	return labels
}
