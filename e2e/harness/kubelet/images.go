package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/portico-dev/portico/e2e/harness/cluster"
)

// pauseTag is the tag of the pause image (PauseImage's).
const pauseTag = "3.10.1"

// BuildPauseImage builds the pause program statically and packs it as a one-layer OCI
// image with umoci (installed by `make deps`), written as an OCI archive to out; work is a
// scratch directory.
func BuildPauseImage(ctx context.Context, work, out string) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	layer := filepath.Join(work, "pause-layer")
	if err := os.MkdirAll(layer, 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(layer, "pause"), "./e2e/harness/kubelet/pause")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if o, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building pause: %w: %s", err, o)
	}
	return packImage(ctx, work, layer, out, pauseTag, "/pause")
}

// packImage packs the directory layer as the only layer of an OCI image whose entrypoint
// is entrypoint, tagged tag, into the OCI archive out.
func packImage(ctx context.Context, work, layer, out, tag, entrypoint string) error {
	oci := filepath.Join(work, "oci-"+tag)
	tarball := filepath.Join(work, "layer-"+tag+".tar")
	steps := [][]string{
		{"tar", "-C", layer, "-cf", tarball, "."},
		{"umoci", "init", "--layout", oci},
		{"umoci", "new", "--image", oci + ":" + tag},
		{"umoci", "raw", "add-layer", "--image", oci + ":" + tag, tarball},
		{"umoci", "config", "--image", oci + ":" + tag, "--architecture=amd64", "--os=linux", "--config.entrypoint=" + entrypoint},
		{"tar", "-C", oci, "-cf", out, "."},
	}
	for _, s := range steps {
		if o, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, o)
		}
	}
	return nil
}
