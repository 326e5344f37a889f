package endpoints

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/portico-dev/portico/model"
)

// mk builds an endpoint at addr:80. flags holds l (local), r (ready), s (serving) and
// t (terminating).
func mk(addr, flags string) Endpoint {
	return Endpoint{Endpoint: model.Endpoint{
		Addr:        netip.MustParseAddr(addr),
		Port:        80,
		Local:       strings.Contains(flags, "l"),
		Ready:       strings.Contains(flags, "r"),
		Serving:     strings.Contains(flags, "s"),
		Terminating: strings.Contains(flags, "t"),
	}}
}

// zones returns e with zone hints.
func zones(e Endpoint, z ...string) Endpoint {
	e.ZoneHints = z
	return e
}

// nodes returns e with node hints.
func nodes(e Endpoint, n ...string) Endpoint {
	e.NodeHints = n
	return e
}

// flagString renders the conditions of e in mk's notation.
func flagString(e model.Endpoint) string {
	var b strings.Builder
	for _, f := range []struct {
		on bool
		c  byte
	}{{e.Local, 'l'}, {e.Ready, 'r'}, {e.Serving, 's'}, {e.Terminating, 't'}} {
		if f.on {
			b.WriteByte(f.c)
		}
	}
	return b.String()
}

// render renders eps as "addr:port/flags", keeping nil apart from empty.
func render(eps []model.Endpoint) []string {
	if eps == nil {
		return nil
	}
	out := []string{}
	for _, e := range eps {
		out = append(out, e.String()+"/"+flagString(e))
	}
	return out
}

var (
	// none is an empty, non-nil expectation.
	none = []string{}

	topoA = Topology{NodeName: "node-a", Zone: "zone-a"}

	clusterOnly = Sets{Cluster: true}
	localOnly   = Sets{Local: true}
	bothSets    = Sets{Cluster: true, Local: true}
)

func TestCategorize(t *testing.T) {
	tests := []struct {
		name        string
		eps         []Endpoint
		sets        Sets
		topo        Topology
		wantCluster []string
		wantLocal   []string
		wantHasAny  bool
	}{
		{
			name:        "no endpoints, cluster policy",
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: none,
		},
		{
			name:      "no endpoints, internal Local",
			eps:       []Endpoint{},
			sets:      localOnly,
			topo:      topoA,
			wantLocal: none,
		},
		{
			name:        "no endpoints, external Local uses both sets",
			sets:        bothSets,
			topo:        topoA,
			wantCluster: none,
			wantLocal:   none,
		},
		{
			name:        "all ready",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lrs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/lrs"},
			wantHasAny:  true,
		},
		{
			name:        "output sorted by address whatever the input order",
			eps:         []Endpoint{mk("10.0.0.10", "rs"), mk("10.0.0.2", "rs"), mk("10.0.0.1", "rs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs", "10.0.0.10:80/rs"},
			wantHasAny:  true,
		},
		{
			name:        "some not ready",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", ""), mk("10.0.0.3", "rs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.3:80/rs"},
			wantHasAny:  true,
		},
		{
			name:        "none ready and none terminating",
			eps:         []Endpoint{mk("10.0.0.1", ""), mk("10.0.0.2", "l")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: none,
			wantLocal:   none,
		},
		{
			name:        "serving but neither ready nor terminating is not used",
			eps:         []Endpoint{mk("10.0.0.1", "s")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: none,
		},
		{
			name:        "terminating fallback for cluster",
			eps:         []Endpoint{mk("10.0.0.1", "st"), mk("10.0.0.2", ""), mk("10.0.0.3", "lst")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/st", "10.0.0.3:80/lst"},
			wantHasAny:  true,
		},
		{
			name:        "no terminating fallback while a ready endpoint exists",
			eps:         []Endpoint{mk("10.0.0.1", "st"), mk("10.0.0.2", "rs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name:       "terminating fallback for local",
			eps:        []Endpoint{mk("10.0.0.1", "lst"), mk("10.0.0.2", "rs"), mk("10.0.0.3", "l")},
			sets:       localOnly,
			topo:       topoA,
			wantLocal:  []string{"10.0.0.1:80/lst"},
			wantHasAny: true,
		},
		{
			name:        "local and cluster fall back independently",
			eps:         []Endpoint{mk("10.0.0.1", "lst"), mk("10.0.0.2", "rs")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.2:80/rs"},
			wantLocal:   []string{"10.0.0.1:80/lst"},
			wantHasAny:  true,
		},
		{
			name:       "local ready preferred over local terminating",
			eps:        []Endpoint{mk("10.0.0.1", "lst"), mk("10.0.0.2", "lrs")},
			sets:       localOnly,
			topo:       topoA,
			wantLocal:  []string{"10.0.0.2:80/lrs"},
			wantHasAny: true,
		},
		{
			name:        "terminating endpoints that stopped serving are never used",
			eps:         []Endpoint{mk("10.0.0.1", "t"), mk("10.0.0.2", "lt")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: none,
			wantLocal:   none,
		},
		{
			name:        "terminating not serving skipped, terminating serving used",
			eps:         []Endpoint{mk("10.0.0.1", "t"), mk("10.0.0.2", "st")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.2:80/st"},
			wantHasAny:  true,
		},
		{
			name: "zone hints all present and matching",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-a"),
				zones(mk("10.0.0.2", "rs"), "zone-b"),
				zones(mk("10.0.0.3", "rs"), "zone-a"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.3:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "endpoint hinted for several zones",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-a", "zone-b"),
				zones(mk("10.0.0.2", "rs"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "zone hint missing on one ready endpoint ignores topology",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-a"),
				mk("10.0.0.2", "rs"),
				zones(mk("10.0.0.3", "rs"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs", "10.0.0.3:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "zone hint missing only on a not-ready endpoint keeps topology",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-a"),
				mk("10.0.0.2", ""),
				zones(mk("10.0.0.3", "rs"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "hints of not-ready endpoints do not select the mode",
			eps: []Endpoint{
				zones(mk("10.0.0.1", ""), "zone-a"),
				zones(mk("10.0.0.2", "rs"), "zone-b"),
				zones(mk("10.0.0.3", "rs"), "zone-c"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.2:80/rs", "10.0.0.3:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "zone hints not matching our zone use all endpoints",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-b"),
				zones(mk("10.0.0.2", "rs"), "zone-c"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "node without zone label ignores zone hints",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "rs"), "zone-a"),
				zones(mk("10.0.0.2", "rs"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        Topology{NodeName: "node-a"},
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "node hints matching this node (PreferSameNode)",
			eps: []Endpoint{
				zones(nodes(mk("10.0.0.1", "lrs"), "node-a"), "zone-a"),
				zones(nodes(mk("10.0.0.2", "rs"), "node-b"), "zone-a"),
				zones(nodes(mk("10.0.0.3", "rs"), "node-c"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/lrs"},
			wantHasAny:  true,
		},
		{
			name: "node hints for other nodes fall back to zone hints",
			eps: []Endpoint{
				zones(nodes(mk("10.0.0.1", "rs"), "node-b"), "zone-a"),
				zones(nodes(mk("10.0.0.2", "rs"), "node-c"), "zone-a"),
				zones(nodes(mk("10.0.0.3", "rs"), "node-d"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "node hints for other nodes and no zone hints use all endpoints",
			eps: []Endpoint{
				nodes(mk("10.0.0.1", "rs"), "node-b"),
				nodes(mk("10.0.0.2", "rs"), "node-c"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "node hint missing on one endpoint falls back to zone hints",
			eps: []Endpoint{
				zones(nodes(mk("10.0.0.1", "lrs"), "node-a"), "zone-a"),
				zones(mk("10.0.0.2", "rs"), "zone-a"),
				zones(nodes(mk("10.0.0.3", "rs"), "node-c"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/lrs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "node hints win over zone hints when both apply",
			eps: []Endpoint{
				zones(nodes(mk("10.0.0.1", "lrs"), "node-a", "node-b"), "zone-a"),
				zones(nodes(mk("10.0.0.2", "rs"), "node-b"), "zone-a"),
				zones(nodes(mk("10.0.0.3", "lrs"), "node-a"), "zone-a"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/lrs", "10.0.0.3:80/lrs"},
			wantHasAny:  true,
		},
		{
			name: "node hints without zone hints and no match use all endpoints",
			eps: []Endpoint{
				nodes(mk("10.0.0.1", "rs"), "node-b"),
				zones(nodes(mk("10.0.0.2", "rs"), "node-c"), "zone-a"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/rs"},
			wantHasAny:  true,
		},
		{
			name: "topology ignored when only terminating endpoints exist",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "st"), "zone-a"),
				zones(mk("10.0.0.2", "st"), "zone-b"),
			},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/st", "10.0.0.2:80/st"},
			wantHasAny:  true,
		},
		{
			name: "topology does not narrow the local set",
			eps: []Endpoint{
				zones(mk("10.0.0.1", "lrs"), "zone-b"),
				zones(mk("10.0.0.2", "rs"), "zone-a"),
			},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.2:80/rs"},
			wantLocal:   []string{"10.0.0.1:80/lrs"},
			wantHasAny:  true,
		},
		{
			name:       "internal Local with local endpoints",
			eps:        []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lrs"), mk("10.0.0.3", "l")},
			sets:       localOnly,
			topo:       topoA,
			wantLocal:  []string{"10.0.0.2:80/lrs"},
			wantHasAny: true,
		},
		{
			name:       "internal Local without local endpoints still has endpoints elsewhere",
			eps:        []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "rs")},
			sets:       localOnly,
			topo:       topoA,
			wantLocal:  none,
			wantHasAny: true,
		},
		{
			name:        "external Local with local endpoints",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lrs")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/lrs"},
			wantLocal:   []string{"10.0.0.2:80/lrs"},
			wantHasAny:  true,
		},
		{
			name:        "external Local without local endpoints",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lst")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs"},
			wantLocal:   []string{"10.0.0.2:80/lst"},
			wantHasAny:  true,
		},
		{
			name:        "external Local with no usable local endpoint at all",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "l")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs"},
			wantLocal:   none,
			wantHasAny:  true,
		},
		{
			name:        "external Cluster with external frontends uses only cluster",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lrs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/lrs"},
			wantHasAny:  true,
		},
		{
			name:        "internal Local and external Cluster use both sets",
			eps:         []Endpoint{mk("10.0.0.1", "rs"), mk("10.0.0.2", "lrs")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.2:80/lrs"},
			wantLocal:   []string{"10.0.0.2:80/lrs"},
			wantHasAny:  true,
		},
		{
			name:        "internal Local and external Local use both sets",
			eps:         []Endpoint{mk("10.0.0.1", "rs")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs"},
			wantLocal:   none,
			wantHasAny:  true,
		},
		{
			name:       "HasAny from terminating-only endpoints with no local endpoint",
			eps:        []Endpoint{mk("10.0.0.1", "st"), mk("10.0.0.2", "t")},
			sets:       localOnly,
			topo:       topoA,
			wantLocal:  none,
			wantHasAny: true,
		},
		{
			name:        "HasAny false when nothing is usable",
			eps:         []Endpoint{mk("10.0.0.1", ""), mk("10.0.0.2", "t"), mk("10.0.0.3", "lt")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: none,
			wantLocal:   none,
		},
		{
			name:        "ports kept apart and sorted after the address",
			eps:         []Endpoint{{Endpoint: model.Endpoint{Addr: netip.MustParseAddr("10.0.0.1"), Port: 8080, Ready: true, Serving: true}}, mk("10.0.0.1", "rs")},
			sets:        clusterOnly,
			topo:        topoA,
			wantCluster: []string{"10.0.0.1:80/rs", "10.0.0.1:8080/rs"},
			wantHasAny:  true,
		},
		{
			name:        "IPv6 endpoints",
			eps:         []Endpoint{mk("fd00::2", "lrs"), mk("fd00::1", "rs")},
			sets:        bothSets,
			topo:        topoA,
			wantCluster: []string{"[fd00::1]:80/rs", "[fd00::2]:80/lrs"},
			wantLocal:   []string{"[fd00::2]:80/lrs"},
			wantHasAny:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Categorize(tt.eps, tt.sets, tt.topo)
			if c := render(got.Cluster); !reflect.DeepEqual(c, tt.wantCluster) {
				t.Errorf("Cluster = %#v, want %#v", c, tt.wantCluster)
			}
			if l := render(got.Local); !reflect.DeepEqual(l, tt.wantLocal) {
				t.Errorf("Local = %#v, want %#v", l, tt.wantLocal)
			}
			if got.HasAny != tt.wantHasAny {
				t.Errorf("HasAny = %t, want %t", got.HasAny, tt.wantHasAny)
			}
		})
	}
}

func TestCategorizeLeavesInputAlone(t *testing.T) {
	eps := []Endpoint{zones(mk("10.0.0.2", "lrs"), "zone-a"), mk("10.0.0.1", "rs")}
	want := []Endpoint{zones(mk("10.0.0.2", "lrs"), "zone-a"), mk("10.0.0.1", "rs")}
	r := Categorize(eps, bothSets, topoA)
	r.Cluster[0].Port = 1
	r.Local[0].Port = 1
	if !reflect.DeepEqual(eps, want) {
		t.Errorf("input changed to %#v", eps)
	}
}
