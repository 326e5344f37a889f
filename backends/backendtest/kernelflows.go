package backendtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// unsupportedProbes is the number of connections a flow marked unsupported opens when it
// expects endpoints: enough to see both endpoints of a balanced flow that works after all.
const unsupportedProbes = 8

// KernelSubject is a real backend under test of RunKernelFlows.
type KernelSubject struct {
	// Mode is the backend's proxy mode (see Subject.Mode).
	Mode string
	// Tweak adapts the compile settings to the backend's mode (nil: none).
	Tweak func(*compile.NodeConfig)
	// Prepare readies node-a for the backend (sysctls); it runs in node-a's namespace.
	// Nil: nothing to do.
	Prepare func(ctx context.Context) error
	// New returns the backend that programs node-a. RunKernelFlows calls its methods only
	// in node-a's namespace.
	New func(t *testing.T) backends.Backend
}

// RunKernelFlows runs every flow of the packet-flow table with real packets through the
// kernel, without an API server: it builds the e2e topology's namespaces with a TCP and
// a UDP traffic server on ServerPort in every pod; then, for each scenario, it compiles
// the scenario's Services for node-a as RunFlows does, makes node-a's dataplane hold
// exactly them (a full Sync of each family), and probes each flow with Prober. A flow the
// table marks unsupported in the subject's mode must fail. SCTP flows need a kernel with
// SCTP sockets (the VM's); without them they are left to the e2e suite (ErrSCTPFlow), and
// health checks too.
func RunKernelFlows(t *testing.T, s KernelSubject) {
	table, err := LoadFlows()
	if err != nil {
		t.Fatal(err)
	}
	topo := kernelTopology(t)
	be := s.New(t)
	if err := topo.Do(netns.NodeA, func() error { return prepare(s, be) }); err != nil {
		t.Fatalf("preparing node-a: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Do(netns.NodeA, func() error { return be.Cleanup(context.Background()) }); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	p := Prober{Topo: topo}
	applied := map[model.Family]*model.Table{}
	for i, sc := range table.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			w := newWorld(topo.Spec(), table, sc, i)
			if err := syncAll(topo, be, w.compile(s.Tweak), applied); err != nil {
				t.Fatal(err)
			}
			for _, f := range sc.Flows {
				t.Run(f.Name, func(t *testing.T) { w.probe(t, p, f, f.Unsupported[s.Mode]) })
			}
		})
	}
}

// prepare runs the subject's Prepare and the backend's (a backends.Preparer).
func prepare(s KernelSubject, be backends.Backend) error {
	ctx := context.Background()
	if s.Prepare != nil {
		if err := s.Prepare(ctx); err != nil {
			return err
		}
	}
	if p, ok := be.(backends.Preparer); ok {
		return p.Prepare(ctx)
	}
	return nil
}

// kernelTopology builds the e2e topology's namespaces with the pods' traffic servers.
func kernelTopology(t *testing.T) *netns.Topology {
	t.Helper()
	topo := netns.New(netns.DefaultSpec(netns.RandomPrefix()))
	if err := topo.Create(context.Background()); err != nil {
		t.Fatalf("creating the namespaces: %v", err)
	}
	t.Cleanup(func() { _ = topo.Destroy() })
	ports := []traffic.PortSpec{{Port: ServerPort, Protocol: traffic.TCP}, {Port: ServerPort, Protocol: traffic.UDP}}
	if ok, _ := traffic.SCTPSupported(); ok {
		ports = append(ports, traffic.PortSpec{Port: ServerPort, Protocol: traffic.SCTP})
	}
	for _, n := range topo.Spec().Nodes {
		for _, pod := range n.Pods {
			srv, err := traffic.Serve(topo, pod.Name, nil, ports)
			if err != nil {
				t.Fatalf("traffic server in %s: %v", pod.Name, err)
			}
			t.Cleanup(func() { _ = srv.Close() })
		}
	}
	return topo
}

// syncAll makes node-a's dataplane hold exactly state, syncing each family with the Diff
// from the table applied before (the previous scenario's: Services come and go as in a
// cluster), and records what it applied. A failed Sync forgets the family's table, so
// that the next one is full, as the proxier does.
func syncAll(topo *netns.Topology, be backends.Backend, state *model.State, applied map[model.Family]*model.Table) error {
	return topo.Do(netns.NodeA, func() error {
		for _, tbl := range state.Tables {
			fam := tbl.Family()
			if err := be.Sync(context.Background(), tbl, model.Compare(applied[fam], tbl)); err != nil {
				delete(applied, fam)
				return fmt.Errorf("sync %s: %w", fam, err)
			}
			applied[fam] = tbl
		}
		return nil
	})
}

// probe runs flow f with real packets and checks the result against its expectation,
// or, when the flow is marked unsupported in this mode, checks that it fails.
func (w *world) probe(t *testing.T, p Prober, f Flow, unsupported string) {
	if unsupported != "" && len(f.Expect.Pods) > 0 {
		// A failing flow of endpoints times out on every probe: fewer of them suffice.
		f.Probes = min(cmp.Or(f.Probes, ProbesBalanced), unsupportedProbes)
	}
	msg, err := p.Check(context.Background(), w.services[f.To], f)
	switch {
	case errors.Is(err, ErrSCTPFlow):
		t.Skipf("NOT RUN HERE: %v; the e2e suite checks it (a raw INIT and node-a's conntrack table)", err)
	case err != nil:
		t.Fatal(err)
	case unsupported != "" && msg == "":
		t.Errorf("the flow passes, but the table marks it unsupported in this mode (%s): remove the mark", unsupported)
	case unsupported != "":
		t.Logf("unsupported in this mode, as the table says (%s): %s", unsupported, msg)
	case msg != "":
		t.Error(msg)
	}
}
