package cluster

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "e2e", "harness", "cluster")); err != nil {
		t.Errorf("root %s: %v", root, err)
	}
}

func TestTokensFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.csv")
	users := []User{{Name: "admin", Token: "t1", Groups: []string{"system:masters"}}, {Name: "p", Token: "t2"}}
	if err := writeTokens(path, users); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "t1,admin,admin,\"system:masters\"\nt2,p,p,\"\"\n"; string(b) != want {
		t.Errorf("tokens.csv = %q, want %q", b, want)
	}
}

func TestNodesFromTopology(t *testing.T) {
	nodes := NodesFromTopology(netns.New(netns.DefaultSpec("pc000002")))
	if len(nodes) != 2 {
		t.Fatalf("%d nodes", len(nodes))
	}
	n := nodeObject(nodes[1])
	if n.Name != "node-b" || n.Labels[LabelZone] != "zone-b" || n.Labels[LabelHostname] != "node-b" ||
		strings.Join(n.Spec.PodCIDRs, ",") != "10.244.2.0/24,fd00:244:2::/64" || n.Spec.PodCIDR != "10.244.2.0/24" {
		t.Errorf("node object %+v", n)
	}
	st := nodeStatus(NodeSpec{Name: "x", IPv4: netip.MustParseAddr("192.0.2.1")})
	if len(st.Addresses) != 2 || st.Addresses[0].Type != corev1.NodeInternalIP || st.Conditions[0].Type != corev1.NodeReady {
		t.Errorf("status %+v", st)
	}
}

func TestStopBeforeStart(t *testing.T) {
	c := New(Options{})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}
