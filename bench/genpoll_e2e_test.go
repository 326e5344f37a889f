//go:build e2e

package bench

import (
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// scratchNetns returns a new, unnamed network namespace (closed at the end of the test).
func scratchNetns(t *testing.T) vnetns.NsHandle {
	t.Helper()
	h := make(chan vnetns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		// The thread ends up in the new namespace: it stays locked and is discarded.
		runtime.LockOSThread()
		ns, err := vnetns.New()
		h <- ns
		errc <- err
	}()
	ns, err := <-h, <-errc
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// loadNFT runs `nft -f -` with script inside namespace h.
func loadNFT(t *testing.T, h vnetns.NsHandle, script string) {
	t.Helper()
	err := netns.DoIn(h, func() error {
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nft: %v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGenPollerAndKernelUnseen loads nf_tables objects holding addresses into a scratch
// namespace: the poller counts one generation per commit, and the dump finds the
// addresses of named sets, maps, anonymous sets and rule expressions in both a table of
// family ip and one of family inet, and only those.
func TestGenPollerAndKernelUnseen(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft is not installed: %v", err)
	}
	h := scratchNetns(t)
	p, err := StartGenPoller(h, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g0 := p.Last()
	loadNFT(t, h, `
table ip t {
	set s { type ipv4_addr; elements = { 10.200.0.1, 10.200.0.2 }; }
	map m { type inet_service : ipv4_addr; elements = { 80 : 10.200.0.3 }; }
	chain c { ip daddr 10.200.0.4 accept; }
}
table inet u {
	chain c { ip daddr { 10.200.0.5, 10.200.0.6 } accept; }
}`)
	addrs := func(last byte) []netip.Addr {
		var out []netip.Addr
		for i := byte(1); i <= last; i++ {
			out = append(out, netip.AddrFrom4([4]byte{10, 200, 0, i}))
		}
		return out
	}
	if !p.Quiet(100*time.Millisecond, 5*time.Second) {
		t.Fatal("the generation never stayed unchanged")
	}
	if g := p.Last(); g.ID != g0.ID+1 || len(p.Between(g0.At.Add(time.Nanosecond), time.Now())) != 1 {
		t.Errorf("generation %d after one commit from %d (%d changes seen), want %d", g.ID, g0.ID, len(p.Between(g0.At, time.Now())), g0.ID+1)
	}
	if n, err := KernelUnseen(h, addrs(9)); err != nil || n != 3 {
		t.Errorf("KernelUnseen = %d, %v; want 3 (10.200.0.7-9 are nowhere)", n, err)
	}
	loadNFT(t, h, "add element ip t s { 10.200.0.7 }\nadd rule inet u c ip saddr 10.200.0.8 accept\nadd element ip t m { 81 : 10.200.0.9 }")
	p.Quiet(100*time.Millisecond, 5*time.Second)
	if g := p.Last(); g.ID != g0.ID+2 {
		t.Errorf("generation %d after two commits from %d", g.ID, g0.ID)
	}
	if n, err := KernelUnseen(h, addrs(9)); err != nil || n != 0 {
		t.Errorf("KernelUnseen = %d, %v; want 0", n, err)
	}
	if err := p.Err(); err != nil {
		t.Errorf("polling: %v", err)
	}
}

// TestMonitorMute checks that a muted monitor receives no notification and an unmuted one
// receives them again.
func TestMonitorMute(t *testing.T) {
	h := scratchNetns(t)
	m, err := StartMonitor(h)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Mute(); err != nil {
		t.Fatal(err)
	}
	loadNFT(t, h, "table ip t { chain c { ip daddr 10.200.0.1 accept; }; }")
	time.Sleep(200 * time.Millisecond)
	if s := m.Stats(); s.Msgs != 0 {
		t.Errorf("muted monitor received %d messages", s.Msgs)
	}
	if err := m.Unmute(); err != nil {
		t.Fatal(err)
	}
	w := m.Watch(netip.MustParseAddr("10.200.0.2"))
	loadNFT(t, h, "add rule ip t c ip daddr 10.200.0.2 accept")
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Error("unmuted monitor did not see the new rule's address")
	}
}
