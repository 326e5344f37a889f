//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// deployDirs returns deploy/'s kustomizations: the base and every overlay.
func deployDirs(t *testing.T) (kubectl string, dirs []string) {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl = filepath.Join(root, ".cache", "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("kubectl (built by make cluster-bins): %v", err)
	}
	overlays, err := filepath.Glob(filepath.Join(root, "deploy", "overlays", "*", "kustomization.yaml"))
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays in deploy/overlays (%v)", err)
	}
	dirs = []string{filepath.Join(root, "deploy", "base")}
	for _, o := range overlays {
		dirs = append(dirs, filepath.Dir(o))
	}
	return kubectl, dirs
}

// TestDeployManifestsDryRun: the API server accepts every manifest of deploy/, the base
// and each overlay, applied as an operator would (`kubectl apply -k`, server side) in a
// server-side dry run: schemas, defaults and admission, nothing stored.
func TestDeployManifestsDryRun(t *testing.T) {
	kubectl, dirs := deployDirs(t)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := suite.Topo.Exec(ctx, netns.NodeA, kubectl, "--kubeconfig", suite.Cluster.Kubeconfig(),
				"apply", "-k", dir, "--server-side", "--field-manager=portico-e2e", "--dry-run=server").CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply -k %s --dry-run=server: %v\n%s", dir, err, out)
			}
			for _, want := range []string{"serviceaccount/portico", "clusterrole.rbac.authorization.k8s.io/portico",
				"clusterrolebinding.rbac.authorization.k8s.io/portico", "daemonset.apps/portico"} {
				if !strings.Contains(string(out), want+" serverside-applied (server dry run)") {
					t.Errorf("%s: %s not applied:\n%s", dir, want, out)
				}
			}
			t.Logf("%s", out)
		})
	}
}
