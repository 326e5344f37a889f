package backendtest

import (
	"strings"
	"testing"
)

// TestFlowTableResolves loads the table and resolves every flow's packet against the
// allocated Services, so that a typo in the table fails here, not as a puzzling tracer or
// e2e result.
func TestFlowTableResolves(t *testing.T) {
	table, err := LoadFlows()
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Scenarios) < 15 {
		t.Fatalf("the table has %d scenarios; it should hold every static scenario", len(table.Scenarios))
	}
	spec := Topology()
	flows := 0
	for i, sc := range table.Scenarios {
		w := newWorld(spec, table, sc, i)
		for _, f := range sc.Flows {
			dst, err := Destination(spec, w.services[f.To], f)
			if err != nil {
				t.Errorf("%s: %v", sc.Name, err)
				continue
			}
			if _, _, err := Source(spec, f, dst.Addr()); err != nil {
				t.Errorf("%s: %v", sc.Name, err)
			}
			flows++
		}
	}
	t.Logf("%d scenarios, %d flows", len(table.Scenarios), flows)
}

// TestFlowTableCheck checks that mistakes in a table are refused with a message naming
// the flow.
func TestFlowTableCheck(t *testing.T) {
	base := Scenario{Name: "s", Services: []Service{{Name: "web"}}}
	cases := map[string]Flow{
		"is not a host":             {Name: "f", From: "pod-z9", To: "web", Expect: Expect{Outcome: Refused}},
		"is not a Service":          {Name: "f", From: "client", To: "nope", Expect: Expect{Outcome: Refused}},
		"needs addr and port":       {Name: "f", From: "client", Expect: Expect{Outcome: Dropped}},
		"is not ClusterIP":          {Name: "f", From: "client", To: "web", Via: "Ingress", Expect: Expect{Outcome: Refused}},
		"names no pod":              {Name: "f", From: "client", To: "web"},
		"is neither an index":       {Name: "f", From: "client", To: "web", Src: "x", Expect: Expect{Outcome: Refused}},
		`peer "nobody" is not`:      {Name: "f", From: "client", To: "web", Peer: "nobody", Expect: Expect{Pods: []string{"pod-a1"}}},
		"appears twice (scenarios)": {},
	}
	for want, f := range cases {
		sc := base
		tbl := &FlowTable{Scenarios: []Scenario{sc}}
		if f.Name == "" {
			tbl.Scenarios = append(tbl.Scenarios, sc)
			want = "appears twice"
		} else {
			tbl.Scenarios[0].Flows = []Flow{f}
		}
		if err := tbl.check(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check = %v, want an error containing %q", err, want)
		}
	}
}

// TestExpectAndEndpointYAML checks the two spellings of endpoints and expectations.
func TestExpectAndEndpointYAML(t *testing.T) {
	var e Endpoint
	if err := e.UnmarshalJSON([]byte(`{"pod":"pod-a1","ready":false,"terminating":true}`)); err != nil || !e.NotReady || e.NotServing || !e.Terminating {
		t.Errorf("object endpoint = %+v, %v", e, err)
	}
	if err := e.UnmarshalJSON([]byte(`{"pod":"pod-a1","redy":false}`)); err == nil {
		t.Error("an unknown endpoint field is accepted")
	}
	var x Expect
	if err := x.UnmarshalJSON([]byte(`"timeout"`)); err == nil {
		t.Error(`expect "timeout" is accepted`)
	}
	if err := x.UnmarshalJSON([]byte(`["pod-a1"]`)); err != nil || len(x.Pods) != 1 {
		t.Errorf("expect list = %+v, %v", x, err)
	}
}
