package model

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func testPort(name string, port uint16, ep byte) *ServicePort {
	sp := &ServicePort{
		Name:      ServicePortName{Namespace: "ns", Name: name, Port: fmt.Sprint(port), Protocol: TCP},
		Frontends: []Frontend{{Kind: ClusterIP, Addr: netip.MustParseAddr("10.96.0.1"), Port: port}},
		Cluster:   []Endpoint{{Addr: netip.AddrFrom4([4]byte{10, 244, 1, ep}), Port: 8080, Ready: true, Serving: true}},
		Internal:  Traffic{Endpoints: ClusterEndpoints, Masquerade: MasqueradeOffCluster, Empty: Reject},
	}
	return sp.Seal()
}

// TestTableAgainstMap applies random updates to a Table and to a plain map, and checks
// after each that the Table holds what the map does and that Compare names exactly the
// ports that changed (including a port replaced by an equal one: not changed).
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	node := Node{Name: "n"}
	tbl := NewTable(IPv4, node)
	ref := map[ServicePortName]*ServicePort{}
	for round := range 300 {
		var set []*ServicePort
		var remove []ServicePortName
		for range rng.IntN(20) {
			sp := testPort(fmt.Sprintf("s%d", rng.IntN(500)), uint16(80+rng.IntN(2)), byte(rng.IntN(3)))
			if rng.IntN(3) == 0 {
				remove = append(remove, sp.Name)
			} else {
				set = append(set, sp)
			}
		}
		next := tbl.Update(node, set, remove)
		want := maps.Clone(ref)
		for _, n := range remove {
			delete(want, n)
		}
		for _, sp := range set {
			want[sp.Name] = sp
		}
		var changed, removed []ServicePortName
		for n, sp := range want {
			if old, ok := ref[n]; !ok || old.Hash != sp.Hash {
				changed = append(changed, n)
			}
		}
		for n := range ref {
			if _, ok := want[n]; !ok {
				removed = append(removed, n)
			}
		}
		slices.SortFunc(changed, ServicePortName.Compare)
		slices.SortFunc(removed, ServicePortName.Compare)
		d := Compare(tbl, next)
		if !slices.Equal(d.Changed, changed) || !slices.Equal(d.Removed, removed) || d.Full {
			t.Fatalf("round %d: diff changed %v removed %v, want %v %v", round, d.Changed, d.Removed, changed, removed)
		}
		if next.Len() != len(want) || !slices.Equal(next.Names(), slices.SortedFunc(maps.Keys(want), ServicePortName.Compare)) {
			t.Fatalf("round %d: table holds %d ports %v, want %d", round, next.Len(), next.Names(), len(want))
		}
		for n, sp := range want {
			if got, ok := next.Get(n); !ok || got != sp {
				t.Fatalf("round %d: Get(%v) = %v, %v", round, n, got, ok)
			}
		}
		for n, sp := range ref { // the previous Table is unchanged
			if got, ok := tbl.Get(n); !ok || got != sp || tbl.Len() != len(ref) {
				t.Fatalf("round %d: the previous table changed at %v", round, n)
			}
		}
		tbl, ref = next, want
	}
}

// TestUpdateSharesUnchangedShards: an update of one Service copies one shard; the others
// are shared with the previous Table (what keeps a sync's cost independent of the
// number of Services).
func TestUpdateSharesUnchangedShards(t *testing.T) {
	node := Node{Name: "n"}
	var all []*ServicePort
	for i := range 5000 {
		all = append(all, testPort(fmt.Sprintf("s%d", i), 80, 1))
	}
	prev := NewTable(IPv4, node).Update(node, all, nil)
	next := prev.Update(node, []*ServicePort{testPort("s42", 80, 2)}, nil)
	differ := 0
	for i := range prev.shards {
		if prev.shards[i] != next.shards[i] {
			differ++
		}
	}
	if differ != 1 {
		t.Errorf("one changed Service copied %d shards, want 1", differ)
	}
	if d := Compare(prev, next); len(d.Changed) != 1 || d.Changed[0].Name != "s42" {
		t.Errorf("diff %+v, want s42 changed", d)
	}
}
