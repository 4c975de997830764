package store

import (
	"bytes"
	"strings"

	"github.com/cagewatch/cagewatch/model"
)

// Baseline keys in bbolt (schema 5) keep an image's repository and tag apart:
// "<repository>\x00<tag>", so a repository's tags are one key prefix and no
// stored reference is ever parsed again ("registry:5000/app" has a colon that
// is no tag). A workload's baseline and an image known by id only sit under
// prefixes no repository can start with.
const keySep = "\x00"

var (
	workloadPrefix = []byte("\x00workload\x00")
	imageIDPrefix  = []byte("\x00id\x00")
)

// storeKey is where b is stored.
func storeKey(b *model.Baseline) []byte {
	switch {
	case b.Workload != "":
		return append(bytes.Clone(workloadPrefix), b.Workload...)
	case b.Image == "":
		return append(bytes.Clone(imageIDPrefix), b.ImageID...)
	default:
		return []byte(b.Image + keySep + b.Tag)
	}
}

// storeKeys are where a profile key may be stored: an image reference is
// split once here, at the edge (a command line, a control request); a
// reference without a repository may be an image id.
func storeKeys(profile string) [][]byte {
	if model.IsWorkloadKey(profile) {
		return [][]byte{append(bytes.Clone(workloadPrefix), profile...)}
	}
	repo, tag := model.SplitImageRef(profile)
	keys := [][]byte{[]byte(repo + keySep + tag)}
	if !strings.Contains(profile, "/") {
		keys = append(keys, append(bytes.Clone(imageIDPrefix), profile...))
	}
	return keys
}

// profileOf is the profile key a stored key names, for messages about values
// that cannot be decoded.
func profileOf(k []byte) string {
	if rest, ok := bytes.CutPrefix(k, workloadPrefix); ok {
		return string(rest)
	}
	if rest, ok := bytes.CutPrefix(k, imageIDPrefix); ok {
		return string(rest)
	}
	repo, tag, _ := strings.Cut(string(k), keySep)
	if tag == "" {
		return repo
	}
	return repo + ":" + tag
}
