//go:build ipvsvm

package ipvs

// These tests need a kernel with IPVS: `make test-ipvs-vm` builds them into a static
// binary and runs it as root in a VM booted from Debian's cloud kernel (e2e/vm/run.sh),
// because the machine's own kernel has none. They build the e2e harness's network
// namespaces inside the VM, program node-a's IPVS with the backend and send real TCP
// connections through it.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/iptables"
	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/nodesetup"
)

// vmEnv is the namespaces, the servers in pod-a1 and pod-b1, and a backend for node-a.
type vmEnv struct {
	topo *netns.Topology
	b    *Backend
	eps  []netip.AddrPort
}

// newVMEnv builds the namespaces with servers on port 8080 of pod-a1 and pod-b1: echo
// servers, which keep a connection open for more questions, when echo is set, else the
// probe servers of traffic.ProbeN.
func newVMEnv(t *testing.T, opts backends.Options, echo bool) *vmEnv {
	t.Helper()
	topo := netns.New(netns.DefaultSpec(netns.RandomPrefix()))
	if err := topo.Create(context.Background()); err != nil {
		t.Fatalf("creating the namespaces: %v", err)
	}
	t.Cleanup(func() { _ = topo.Destroy() })
	e := &vmEnv{topo: topo}
	for _, pod := range []string{netns.PodA1, netns.PodB1} {
		ip := topo.PodIP(pod, netns.IPv4)
		var srv interface{ Close() error }
		var err error
		if echo {
			srv, err = traffic.ServeEcho(topo, pod, []netip.Addr{ip}, 8080)
		} else {
			srv, err = traffic.Serve(topo, pod, []netip.Addr{ip}, []traffic.PortSpec{{Port: 8080, Protocol: traffic.TCP}})
		}
		if err != nil {
			t.Fatalf("serving in %s: %v", pod, err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		e.eps = append(e.eps, netip.AddrPortFrom(ip, 8080))
	}
	// IPVS keeps conntrack entries for what it forwards, so that nftables can masquerade
	// it (the node set-up writes this in ipvs mode).
	if err := topo.Do(netns.NodeA, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/vs/conntrack", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("net.ipv4.vs.conntrack in node-a: %v", err)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	return e
}

var clusterIP = netip.AddrPortFrom(netip.MustParseAddr("10.96.0.10"), 80)

var nodePort = netip.AddrPortFrom(netip.MustParseAddr("192.168.50.10"), 30080)

// table returns node-a's table with one Service served by eps: a ClusterIP, and a
// NodePort on node-a's LAN address; outside clients are masqueraded, pods are not.
func (e *vmEnv) table(eps ...netip.AddrPort) *model.Table {
	forward := model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeOffCluster, Empty: model.Reject}
	sp := &model.ServicePort{
		Name: model.ServicePortName{Namespace: "vm", Name: "web", Protocol: model.TCP},
		Frontends: []model.Frontend{
			{Kind: model.ClusterIP, Addr: clusterIP.Addr(), Port: clusterIP.Port()},
			{Kind: model.NodePort, Addr: nodePort.Addr(), Port: nodePort.Port()},
		},
		Internal: forward, External: forward, ExternalFromPods: forward, ExternalFromNode: forward,
	}
	for _, ap := range eps {
		sp.Cluster = append(sp.Cluster, model.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: true, Serving: true})
	}
	node := model.Node{Name: netns.NodeA, LocalTraffic: model.LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	return model.NewTable(model.IPv4, node).Update(node, []*model.ServicePort{sp.Seal()}, nil)
}

// sync syncs tbl into node-a.
func (e *vmEnv) sync(t *testing.T, tbl *model.Table, d model.Diff) {
	t.Helper()
	if err := e.topo.Do(netns.NodeA, func() error { return e.b.Sync(context.Background(), tbl, d) }); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// dump returns node-a's IPVS state as the backend dumps it.
func (e *vmEnv) dump(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	if err := e.topo.Do(netns.NodeA, func() error { return e.b.Dump(context.Background(), &buf) }); err != nil {
		t.Fatalf("dump: %v", err)
	}
	return buf.String()
}

// probe opens n connections from pod-a2 to the ClusterIP and returns who answered.
func (e *vmEnv) probe(n int) traffic.Stats {
	return traffic.ProbeN(context.Background(), e.topo, netns.PodA2, netip.Addr{}, clusterIP, traffic.TCP, 2*time.Second, n)
}

// TestVMClusterIP sends connections from a pod to a ClusterIP through IPVS: both
// endpoints answer, on node-a and on node-b.
func TestVMClusterIP(t *testing.T) {
	e := newVMEnv(t, backends.Options{}, false)
	if err := e.topo.Do(netns.NodeA, func() error { return e.b.Prepare(context.Background()) }); err != nil {
		t.Fatalf("Prepare in a kernel with IPVS: %v", err)
	}
	e.sync(t, e.table(e.eps...), model.Diff{Full: true})
	st := e.probe(20)
	if st.OK() != st.Sent || len(st.Servers) != 2 {
		t.Fatalf("want every probe answered by both endpoints, got %s\n%s", st, e.dump(t))
	}
	t.Logf("ClusterIP through IPVS: %s", st)
	if d := e.dump(t); !strings.Contains(d, "table ip "+TableName) || !strings.Contains(d, DeviceName+" 10.96.0.10") {
		t.Errorf("the dump lacks the nftables table or the bound address:\n%s", d)
	}
}

// TestVMNodePortMasqueraded sends connections from the client (outside the cluster) to
// the NodePort: both endpoints answer, and they see node-a's address (the nftables
// table marked the packets before IPVS, and masqueraded them after), not the client's.
func TestVMNodePortMasqueraded(t *testing.T) {
	e := newVMEnv(t, backends.Options{MasqueradeBit: 14}, false)
	e.sync(t, e.table(e.eps...), model.Diff{Full: true})
	client := e.topo.ClientIPs(netns.IPv4)[0]
	st := traffic.ProbeN(context.Background(), e.topo, netns.Client, client, nodePort, traffic.TCP, 2*time.Second, 20)
	if st.OK() != st.Sent || len(st.Servers) != 2 {
		t.Fatalf("want every probe answered by both endpoints, got %s\n%s", st, e.dump(t))
	}
	for peer := range st.Peers {
		if peer == client {
			t.Errorf("an endpoint saw the client's own address %s: not masqueraded (%s)", client, st)
		}
	}
	t.Logf("NodePort through IPVS: %s, peers %v", st, st.Peers)
}

// TestVMGracefulTermination opens a long-lived connection, removes its endpoint and
// checks that the connection goes on while new connections go to the other endpoint. Once
// it is closed, a sync deletes the real server: IPVS keeps a closed connection as inactive
// for its TIME_WAIT (2 minutes), so the test bounds draining at 8 s (15 minutes in
// production) instead of waiting; the count of connections is checked by the unit tests.
func TestVMGracefulTermination(t *testing.T) {
	e := newVMEnv(t, backends.Options{IPVS: backends.IPVSOptions{TCPFinTimeout: 2 * time.Second}}, true)
	e.b.drainBound = 8 * time.Second
	full := e.table(e.eps...)
	e.sync(t, full, model.Diff{Full: true})
	conn, err := traffic.Dial(context.Background(), e.topo, netns.PodA2, netip.Addr{}, clusterIP, traffic.TCP, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first := conn.Ask(2 * time.Second)
	if first.Outcome != traffic.OK {
		t.Fatalf("the long-lived connection got no answer: %v", first.Err)
	}
	var other netip.AddrPort
	for _, ap := range e.eps {
		if ap != first.Server {
			other = ap
		}
	}
	less := e.table(other)
	e.sync(t, less, model.Compare(full, less))
	if d := e.dump(t); !strings.Contains(d, first.Server.String()+" (weight 0") {
		t.Fatalf("the removed endpoint %s is not kept at weight 0:\n%s", first.Server, d)
	}
	if r := conn.Ask(2 * time.Second); r.Outcome != traffic.OK || r.Server != first.Server {
		t.Fatalf("the long-lived connection to the removed endpoint was cut: %s %v", r.Outcome, r.Err)
	}
	for i := range 10 {
		c, err := traffic.Dial(context.Background(), e.topo, netns.PodA2, netip.Addr{}, clusterIP, traffic.TCP, 2*time.Second)
		if err != nil {
			t.Fatalf("new connection %d: %v", i, err)
		}
		r := c.Ask(2 * time.Second)
		_ = c.Close()
		if r.Outcome != traffic.OK || r.Server != other {
			t.Fatalf("new connection %d: want an answer from %s, got %s from %s (%v)", i, other, r.Outcome, r.Server, r.Err)
		}
	}
	if !e.b.PendingWork(model.IPv4) {
		t.Error("no pending work while a real server drains")
	}
	_ = conn.Close()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Contains(e.dump(t), first.Server.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the drained real server %s was not deleted within 20 s of the close:\n%s", first.Server, e.dump(t))
		}
		time.Sleep(500 * time.Millisecond)
		e.sync(t, less, model.Diff{})
	}
}

// TestVMClusterIPv6 sends connections from a pod to an IPv6 ClusterIP through IPVS: the
// address is bound to the dummy interface, which stays down; both endpoints must answer.
func TestVMClusterIPv6(t *testing.T) {
	e := newVMEnv(t, backends.Options{}, false)
	vip := netip.AddrPortFrom(netip.MustParseAddr("fd00:96::10"), 80)
	var eps []netip.AddrPort
	for _, pod := range []string{netns.PodA1, netns.PodB1} {
		ip := e.topo.PodIP(pod, netns.IPv6)
		srv, err := traffic.Serve(e.topo, pod, []netip.Addr{ip}, []traffic.PortSpec{{Port: 8080, Protocol: traffic.TCP}})
		if err != nil {
			t.Fatalf("serving in %s: %v", pod, err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		eps = append(eps, netip.AddrPortFrom(ip, 8080))
	}
	sp := &model.ServicePort{
		Name:      model.ServicePortName{Namespace: "vm", Name: "web6", Protocol: model.TCP},
		Frontends: []model.Frontend{{Kind: model.ClusterIP, Addr: vip.Addr(), Port: vip.Port()}},
		Internal:  model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeNever, Empty: model.Reject},
	}
	for _, ap := range eps {
		sp.Cluster = append(sp.Cluster, model.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: true, Serving: true})
	}
	node := model.Node{Name: netns.NodeA}
	e.sync(t, model.NewTable(model.IPv6, node).Update(node, []*model.ServicePort{sp.Seal()}, nil), model.Diff{Full: true})
	st := traffic.ProbeN(context.Background(), e.topo, netns.PodA2, netip.Addr{}, vip, traffic.TCP, 2*time.Second, 20)
	if st.OK() != st.Sent || len(st.Servers) != 2 {
		t.Fatalf("want every probe answered by both endpoints, got %s\n%s", st, e.dump(t))
	}
	t.Logf("IPv6 ClusterIP through IPVS: %s", st)
}

// TestVMRestartRemovesWhatItOwned restarts the backend (a new one, a full sync with no
// Service) over a node that the first one programmed: the NodePort's virtual server on
// node-a's own address goes too, known from the frontends of portico's nftables table as
// the real nft lists them, while a virtual server on a node address that portico did not
// write stays.
func TestVMRestartRemovesWhatItOwned(t *testing.T) {
	e := newVMEnv(t, backends.Options{}, false)
	tbl := e.table(e.eps...)
	e.sync(t, tbl, model.Diff{Full: true})
	foreign := netip.AddrPortFrom(nodePort.Addr(), 30999)
	if err := e.topo.Do(netns.NodeA, func() error {
		return e.b.h.NewService(service(vsKey{foreign.Addr(), model.TCP, foreign.Port()}, &virtualServer{scheduler: "rr"}))
	}); err != nil {
		t.Fatal(err)
	}
	restarted, err := New(backends.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.b = restarted
	e.sync(t, model.NewTable(model.IPv4, tbl.Node()), model.Diff{Full: true})
	svcs, err := e.b.h.GetServices() // every virtual server, not only portico's
	if err != nil {
		t.Fatal(err)
	}
	var left []vsKey
	for _, s := range svcs {
		if k, ok := keyOf(s); ok {
			left = append(left, k)
		}
	}
	if want := []vsKey{{foreign.Addr(), model.TCP, foreign.Port()}}; !slices.Equal(left, want) {
		t.Errorf("after a restart with no Service, IPVS holds %v, want only the foreign %v", left, want)
	}
}

// TestVMFlows runs the shared packet-flow table with real packets through IPVS and the
// backend's nftables table in node-a (backendtest.RunKernelFlows): every scenario's
// Services programmed in turn by one backend, the marked flows failing as the table
// says.
func TestVMFlows(t *testing.T) {
	backendtest.RunKernelFlows(t, backendtest.KernelSubject{
		Mode: Name,
		Prepare: func(ctx context.Context) error {
			return nodesetup.New("/").Apply(ctx, nodesetup.Settings{IPVS: true})
		},
		New: func(t *testing.T) backends.Backend {
			b, err := New(backends.Options{MasqueradeBit: 14})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	})
}

// TestVMRemoveKubeProxy builds what upstream kube-proxy's ipvs mode leaves in node-a
// (kube-ipvs0 holding a ClusterIP with its virtual server, a NodePort virtual server on
// node-a's address listed in its KUBE-NODE-PORT-TCP ipset) beside portico's own Service
// and a virtual server of someone else's, then removes kube-proxy's leftovers as
// `portico cleanup --kube-proxy` does: kube-proxy's virtual servers, kube-ipvs0 and its
// ipsets go; portico's virtual servers and the other one stay, and portico still serves.
func TestVMRemoveKubeProxy(t *testing.T) {
	e := newVMEnv(t, backends.Options{}, false)
	e.sync(t, e.table(e.eps...), model.Diff{Full: true})
	portico := e.dump(t)
	kpIP := netip.MustParseAddr("10.96.200.1")
	kpNodePort, foreign := vsKey{nodePort.Addr(), model.TCP, 31999}, vsKey{nodePort.Addr(), model.TCP, 31997}
	run, look := variant.ExecRunner{}, exec.LookPath
	err := e.topo.Do(netns.NodeA, func() error {
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: KubeProxyDevice}}); err != nil {
			return err
		}
		link, err := netlink.LinkByName(KubeProxyDevice)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: netlink.NewIPNet(net.IP(kpIP.AsSlice()))}); err != nil {
			return err
		}
		h, err := openIPVS()
		if err != nil {
			return err
		}
		for _, k := range []vsKey{{kpIP, model.TCP, 80}, kpNodePort, foreign} {
			if err := h.NewService(service(k, &virtualServer{scheduler: "rr"})); err != nil {
				return fmt.Errorf("virtual server %s: %w", k, err)
			}
		}
		_, err = run.Run(context.Background(), "ipset", []string{"restore"}, strings.NewReader(
			"create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 31999\ncreate KUBE-CLUSTER-IP hash:ip,port\nadd KUBE-CLUSTER-IP 10.96.200.1,tcp:80\n"))
		return err
	})
	if err != nil {
		t.Fatalf("building kube-proxy's leftovers: %v", err)
	}
	err = e.topo.Do(netns.NodeA, func() error {
		ports, err := iptables.KubeProxyNodePorts(context.Background(), run, look)
		if err != nil {
			return err
		}
		n, dev, err := e.b.RemoveKubeProxy(context.Background(), ports)
		if err == nil && (n != 2 || !dev) {
			err = fmt.Errorf("deleted %d virtual servers (want 2), removed %s: %v", n, KubeProxyDevice, dev)
		}
		if err == nil {
			_, err = iptables.DestroyKubeProxySets(context.Background(), run, look)
		}
		return err
	})
	if err != nil {
		t.Fatalf("removing kube-proxy's leftovers: %v", err)
	}
	checkKubeProxyGone(t, e, foreign)
	if d := e.dump(t); d != portico {
		t.Errorf("portico's own state changed:\n--- before\n%s--- after\n%s", portico, d)
	}
	if st := e.probe(10); st.OK() != st.Sent {
		t.Errorf("portico's ClusterIP no longer answers: %s", st)
	}
}

// checkKubeProxyGone checks node-a's kernel: no kube-ipvs0, no KUBE- ipset, no virtual
// server of kube-proxy's, and the foreign one still there.
func checkKubeProxyGone(t *testing.T, e *vmEnv, foreign vsKey) {
	t.Helper()
	var sets []byte
	var keys []string
	err := e.topo.Do(netns.NodeA, func() error {
		if _, err := netlink.LinkByName(KubeProxyDevice); err == nil {
			return fmt.Errorf("%s is still there", KubeProxyDevice)
		}
		var err error
		if sets, err = exec.Command("ipset", "list", "-n").Output(); err != nil {
			return err
		}
		h, err := openIPVS()
		if err != nil {
			return err
		}
		svcs, err := h.GetServices()
		for _, s := range svcs {
			if k, ok := keyOf(s); ok {
				keys = append(keys, k.String())
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sets), "KUBE-") {
		t.Errorf("kube-proxy's ipsets are left: %s", sets)
	}
	got := strings.Join(keys, " ")
	if strings.Contains(got, "10.96.200.1") || strings.Contains(got, ":31999") || !strings.Contains(got, foreign.String()) {
		t.Errorf("virtual servers after the removal: %s (want neither kube-proxy's nor a missing %s)", got, foreign)
	}
}
