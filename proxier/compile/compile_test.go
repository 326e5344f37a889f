package compile_test

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestGolden(t *testing.T) {
	cases := []struct {
		name  string
		steps []string
	}{
		{"clusterip", []string{"clusterip.yaml"}},
		{"nodeport", []string{"nodeport.yaml"}},
		{"loadbalancer", []string{"loadbalancer.yaml"}},
		{"externalips", []string{"externalips.yaml"}},
		{"skipped", []string{"skipped.yaml"}},
		{"policies", []string{"policies.yaml"}},
		{"dualstack", []string{"dualstack.yaml"}},
		{"malformed", []string{"malformed.yaml"}},
		{"typechange", []string{"typechange-1.yaml", "typechange-2.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := runSteps(t, tc.steps)
			backendtest.CheckGolden(t, filepath.Join("testdata", tc.name+".golden"), got, *update)
		})
	}
}

// TestGoldenNodeVariants compiles the every-kind scenario under each node variant of the
// backend test kit: the traffic classes show what masqueradeAll, another local-traffic
// detection (or none) and localhost NodePorts decide.
func TestGoldenNodeVariants(t *testing.T) {
	for _, v := range backendtest.NodeVariants {
		t.Run(v.Name, func(t *testing.T) {
			var out strings.Builder
			if err := backendtest.Compile(t, v.Tweak, backendtest.ObjectFiles...).WriteText(&out); err != nil {
				t.Fatal(err)
			}
			backendtest.CheckGolden(t, filepath.Join("testdata", "variant-"+v.Name+".golden"), out.String(), *update)
		})
	}
}

// TestModelInvariants checks model.Table.Check, the guarantees backends rely on, on every
// table the every-kind scenario compiles to under every node variant and on every
// scenario of the packet-flow table.
func TestModelInvariants(t *testing.T) {
	var states []*model.State
	for _, v := range backendtest.NodeVariants {
		states = append(states, backendtest.Compile(t, v.Tweak, backendtest.ObjectFiles...))
	}
	states = append(states, backendtest.FlowStates(t)...)
	for _, st := range states {
		for _, tbl := range st.Tables {
			if err := tbl.Check(); err != nil {
				t.Errorf("%s table of node %s: %v", tbl.Family(), tbl.Node().Name, err)
			}
		}
	}
}

// runSteps compiles each step's objects over the previous step's state and renders every
// state, the diff against the previous one and the problems reported.
func runSteps(t *testing.T, steps []string) string {
	t.Helper()
	var out strings.Builder
	c := compile.NewCompiler()
	prev := map[model.ServiceName]bool{}
	var prevState *model.State
	for i, step := range steps {
		objs, err := backendtest.LoadObjects(step)
		if err != nil {
			t.Fatal(err)
		}
		node := compile.ResolveNode(backendtest.NodeA(), objs.Nodes[0], backendtest.NodeAddrs(), objs.ServiceCIDRPrefixes())
		dirty := dirtyNames(objs, prev)
		state, errs := c.Update(node, dirty, func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
			return objs.Service(n.Namespace, n.Name), objs.SlicesFor(n.Namespace, n.Name)
		})
		fmt.Fprintf(&out, "=== step %d: %s\n", i+1, step)
		writeErrors(&out, errs)
		writeDiffs(&out, prevState, state)
		if err := state.WriteText(&out); err != nil {
			t.Fatal(err)
		}
		prevState = state
	}
	return out.String()
}

func dirtyNames(objs *backendtest.Objects, prev map[model.ServiceName]bool) []model.ServiceName {
	for _, s := range objs.Services {
		prev[model.ServiceName{Namespace: s.Namespace, Name: s.Name}] = true
	}
	var names []model.ServiceName
	for n := range prev {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b model.ServiceName) int { return strings.Compare(a.String(), b.String()) })
	return names
}

func writeErrors(out *strings.Builder, errs []error) {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	slices.Sort(msgs)
	for _, m := range msgs {
		fmt.Fprintf(out, "problem: %s\n", m)
	}
}

func writeDiffs(out *strings.Builder, prev, next *model.State) {
	for _, t := range next.Tables {
		var before *model.Table
		if prev != nil {
			before = prev.Table(t.Family())
		}
		d := model.Compare(before, t)
		fmt.Fprintf(out, "diff %s: full=%t changed=%v removed=%v\n", t.Family(), d.Full, d.Changed, d.Removed)
	}
}
