package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

// syftBinary builds the pinned syft of hack/syft (hack/syft.sh) and returns
// its path. Without it the test fails under CAGEWATCH_REQUIRE_SYFT=1 (CI),
// and is skipped otherwise.
func syftBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../hack/syft.sh").CombinedOutput()
	if err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_SYFT") != "" {
			t.Fatalf("CAGEWATCH_REQUIRE_SYFT is set but hack/syft.sh failed: %v\n%s", err, out)
		}
		t.Skipf("syft could not be built (hack/syft.sh): %v\n%s", err, out)
	}
	abs, err := filepath.Abs("../../bin/syft")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// e2eInUse proves #18 on a learned e2e image: the image has no package
// database, so the real syft's SPDX SBOM of it is imported, and `inuse` must
// show the busybox package in use by /bin/busybox, which the image's
// containers ran while learning.
func e2eInUse(t *testing.T, bin, config, image string) {
	t.Helper()
	syft := syftBinary(t)
	dir := t.TempDir()
	archive, sbom := filepath.Join(dir, "image.tar"), filepath.Join(dir, "sbom.spdx.json")
	if out, err := exec.Command("docker", "save", image, "-o", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker save %s: %v\n%s", image, err, out)
	}
	scan := exec.Command(syft, "scan", "docker-archive:"+archive, "-o", "spdx-json="+sbom, "-q")
	scan.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false")
	if out, err := scan.CombinedOutput(); err != nil {
		t.Fatalf("syft %s: %v\n%s", image, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(cli(t, bin, "--config", config, "sbom", "import", image, sbom))))

	var got struct {
		Image    string             `json:"image"`
		Source   string             `json:"source"`
		Executed int                `json:"executed_binaries"`
		Packages []model.PackageUse `json:"packages"`
	}
	raw := cli(t, bin, "--config", config, "inuse", image, "--json")
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("inuse --json: %v\n%s", err, raw)
	}
	t.Logf("cagewatch inuse %s:\n%s", image, cli(t, bin, "--config", config, "inuse", image))
	if got.Source != "spdx" || got.Executed == 0 {
		t.Errorf("inventory of %s: source %q, %d binaries executed; want the imported SBOM and the learned execs", image, got.Source, got.Executed)
	}
	i := slices.IndexFunc(got.Packages, func(u model.PackageUse) bool { return u.Name == "busybox" })
	if i < 0 {
		t.Fatalf("the SBOM of %s has no busybox package: %+v", image, got.Packages)
	}
	if u := got.Packages[i]; u.Status != model.PackageInUse || !slices.Contains(u.Binaries, "/bin/busybox") {
		t.Errorf("busybox in %s: %s by %v, want in use by /bin/busybox", image, u.Status, u.Binaries)
	}
}
