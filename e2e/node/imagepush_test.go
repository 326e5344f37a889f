//go:build e2e

package node

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/kubelet"
)

// TestImagePush pushes the image the node runs with `make image-push` (its recipe only:
// the image is the one already built) to a registry served on loopback by this test
// (go-containerregistry's in-memory registry), then reads it back through the registry's
// API: the manifest under the tag, its config and every layer.
func TestImagePush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	cmd := exec.CommandContext(ctx, "make", "-C", root, "-o", "image", "image-push", "REGISTRY="+host, "INSECURE=1",
		"IMAGE_TAR="+filepath.Join(work, "portico-image.tar"), "IMAGE_TAG="+kubelet.ImageTag)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make image-push: %v\n%s", err, out)
	}
	t.Logf("make image-push:\n%s", out)
	var m struct {
		MediaType string `json:"mediaType"`
		Config    struct{ Digest string }
		Layers    []struct{ Digest string }
	}
	body := get(ctx, t, srv.URL+"/v2/portico/manifests/"+kubelet.ImageTag,
		"application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("the pushed manifest: %v\n%s", err, body)
	}
	if m.Config.Digest == "" || len(m.Layers) == 0 {
		t.Fatalf("the pushed manifest has no config or no layer:\n%s", body)
	}
	for _, d := range append([]string{m.Config.Digest}, layerDigests(m.Layers)...) {
		get(ctx, t, srv.URL+"/v2/portico/blobs/"+d, "")
	}
	t.Logf("pushed %s/portico:%s: %s, %d layers", host, kubelet.ImageTag, m.MediaType, len(m.Layers))
}

func layerDigests(ls []struct{ Digest string }) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Digest)
	}
	return out
}

// get fetches a URL of the test's registry and fails the test unless it answers 200.
func get(ctx context.Context, t *testing.T, url, accept string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body
}
