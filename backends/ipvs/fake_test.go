package ipvs

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/ipvs/ipvstest"
	"github.com/portico-dev/portico/model"
)

// fakeLinks is Links in memory.
type fakeLinks struct {
	exists bool
	addrs  map[netip.Addr]bool
	ops    int
}

func (l *fakeLinks) Ensure(context.Context) error {
	l.exists = true
	return nil
}

func (l *fakeLinks) Addrs(_ context.Context, f model.Family) ([]netip.Addr, error) {
	var out []netip.Addr
	for a := range l.addrs {
		if model.FamilyOf(a) == f {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

func (l *fakeLinks) AddAddr(_ context.Context, a netip.Addr) error {
	if !l.exists {
		return fmt.Errorf("no device %s", DeviceName)
	}
	l.addrs[a] = true
	l.ops++
	return nil
}

func (l *fakeLinks) DelAddr(_ context.Context, a netip.Addr) error {
	delete(l.addrs, a)
	l.ops++
	return nil
}

func (l *fakeLinks) Remove(context.Context) error {
	l.exists = false
	clear(l.addrs)
	return nil
}

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// testEnv is a backend over the fakes.
type testEnv struct {
	b     *Backend
	h     *ipvstest.Fake
	links *fakeLinks
	clock *fakeClock
	nft   map[model.Family]*knftables.Fake
}

func newEnv(t *testing.T, opts backends.Options) *testEnv {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{b: b, h: ipvstest.New(), links: &fakeLinks{addrs: map[netip.Addr]bool{}}, clock: &fakeClock{time.Unix(1e9, 0)}}
	b.open = func() (Handle, error) { return e.h, nil }
	e.nft = map[model.Family]*knftables.Fake{
		model.IPv4: knftables.NewFake(knftables.IPv4Family, TableName),
		model.IPv6: knftables.NewFake(knftables.IPv6Family, TableName),
	}
	b.newNFT = func(f model.Family) (knftables.Interface, error) { return e.nft[f], nil }
	b.listTable = func(_ context.Context, f model.Family) (string, error) { return e.nft[f].Dump(), nil }
	b.links, b.now = e.links, e.clock.now
	return e
}

// sync syncs one table and fails the test on error.
func (e *testEnv) sync(t *testing.T, tbl *model.Table, d model.Diff) {
	t.Helper()
	if err := e.b.Sync(context.Background(), tbl, d); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// dump returns the fake kernel's virtual servers and the dummy interface's addresses.
func (e *testEnv) dump() string {
	var b strings.Builder
	b.WriteString(e.h.Dump())
	for _, a := range slices.SortedFunc(maps.Keys(e.links.addrs), netip.Addr.Compare) {
		fmt.Fprintf(&b, "%s %s\n", DeviceName, a)
	}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		b.WriteString(e.nft[f].Dump())
	}
	return b.String()
}

// restart returns a new backend (a restarted portico) over e's fake kernel.
func (e *testEnv) restart(t *testing.T, opts backends.Options) *testEnv {
	t.Helper()
	r := newEnv(t, opts)
	r.h, r.links, r.nft, r.clock = e.h, e.links, e.nft, e.clock
	r.b.links, r.b.now = e.links, e.clock.now
	return r
}
