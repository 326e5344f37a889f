package bench

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// vmColdPoll is how often the cold sync reads the kernel's IPVS table: each read lists
// every virtual and real server, so it is not free under emulation.
const vmColdPoll = 200 * time.Millisecond

// ipvsTable is what /proc/net/ip_vs lists: each virtual server ("TCP 10.96.0.10:80") with
// its real servers ("10.240.0.1:8080").
type ipvsTable map[string][]string

// readProcIPVS reads the kernel's IPVS table (IPv4 virtual servers; the bench's Services
// are IPv4).
func readProcIPVS() (ipvsTable, error) {
	f, err := os.Open("/proc/net/ip_vs")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseProcIPVS(bufio.NewScanner(f)), nil
}

// parseProcIPVS parses /proc/net/ip_vs: a virtual server line ("TCP  0A600001:0050 rr")
// starts a block of real server lines ("  -> 0AF00000:1F90      Masq    1      0   0").
func parseProcIPVS(sc *bufio.Scanner) ipvsTable {
	t := ipvsTable{}
	cur := ""
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			cur = ""
			if a, ok := hexAddrPort(f[1]); ok {
				cur = f[0] + " " + a
				t[cur] = t[cur][:0:0]
			}
		case len(f) >= 2 && f[0] == "->" && cur != "":
			if a, ok := hexAddrPort(f[1]); ok {
				t[cur] = append(t[cur], a)
			}
		}
	}
	return t
}

// hexAddrPort reads "0A600001:0050" as "10.96.0.1:80".
func hexAddrPort(s string) (string, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || len(h) != 8 {
		return "", false
	}
	b, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if err != nil || perr != nil {
		return "", false
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(port)).String(), true
}

// completeServices counts the spec's Services whose virtual server holds every expected
// real server, and those whose virtual server exists at all.
func completeServices(t ipvsTable, svcs []VMService) (complete, present int) {
	for _, s := range svcs {
		rs, ok := t["TCP "+net.JoinHostPort(s.ClusterIP, strconv.Itoa(int(s.Port)))]
		if !ok {
			continue
		}
		present++
		have := make(map[string]bool, len(rs))
		for _, r := range rs {
			have[r] = true
		}
		all := true
		for _, e := range s.Endpoints {
			if !have[net.JoinHostPort(e, strconv.Itoa(TargetPort))] {
				all = false
				break
			}
		}
		if all {
			complete++
		}
	}
	return complete, present
}

// vmCold waits until IPVS holds every bulk Service's virtual server with all its real
// servers and the proxy has reported a sync finished after its launch (its own
// kubeproxy_sync_proxy_rules_last_timestamp_seconds); the cold sync is the later of the
// two. A proxy that has not got there within the spec's ColdLimit did not finish.
func vmCold(ctx context.Context, spec *VMSpec, p VMProxy, t0 time.Time, exited <-chan struct{}) *IPVSCold {
	c := &IPVSCold{Expected: len(spec.Services), PollMS: vmColdPoll.Milliseconds(), LimitS: spec.ColdLimit.Seconds()}
	var oneFamily time.Time
	lastNote := t0
	for {
		now := time.Since(t0).Seconds()
		if time.Since(lastNote) > 10*time.Second {
			lastNote = time.Now()
			fmt.Fprintf(os.Stderr, "vm-bench: %s cold, %.0fs: %d of %d Services complete in IPVS, %d virtual servers, reported sync %.2fs\n",
				p.Name, now, c.Complete, c.Expected, c.VirtualServers, c.MetricS)
		}
		if t, err := readProcIPVS(); err == nil {
			complete, present := completeServices(t, spec.Services)
			c.Complete, c.VirtualServers = complete, len(t)
			if present > 0 && c.FirstVSS == 0 {
				c.FirstVSS = now
			}
			if complete == len(spec.Services) && c.IPVSS == 0 {
				c.IPVSS = now
				for _, rs := range t {
					c.RealServers += len(rs)
				}
			}
		}
		if c.MetricS == 0 {
			if s, err := scrapeURL(ctx, p.MetricsURL); err == nil {
				if at, ok := syncedAt(s, t0, &oneFamily); ok {
					c.MetricS = max(at.Sub(t0).Seconds(), 1e-3)
				}
			}
		}
		if c.IPVSS > 0 && c.MetricS > 0 {
			c.S = max(c.IPVSS, c.MetricS)
			return c
		}
		select {
		case <-exited:
			c.Error = "the proxy exited before its first sync"
			return c
		case <-ctx.Done():
			c.Error = ctx.Err().Error()
			return c
		case <-time.After(vmColdPoll):
		}
		if time.Since(t0) > spec.ColdLimit {
			c.DNF, c.S = true, spec.ColdLimit.Seconds()
			return c
		}
	}
}

// vmChanges replaces one endpoint of a random Service per sample and times, from the
// write to the API server, until the Service's virtual server holds the new address as a
// real server with a weight (polled through netlink every millisecond).
func vmChanges(ctx context.Context, spec *VMSpec, cs kubernetes.Interface, rng *rand.Rand, addrOff uint32) *Latency {
	l := &Latency{Method: "the Service's virtual server lists the new real server (IPVS netlink, polled every 1 ms)"}
	h, err := ipvs.New("")
	if err != nil {
		l.Errors = spec.Samples
		return l
	}
	defer h.Close()
	base := netip.MustParseAddr(spec.ChangeBase)
	var acks []float64
	// The first change after the cold sync is not a sample (on the host, other phases
	// come between the two); its time is kept apart.
	first := &spec.Services[rng.IntN(len(spec.Services))]
	if ms, _, err := vmChangeOne(ctx, spec, cs, h, first, addOffset(base, addrOff+uint32(spec.Samples)+1), rng); err == nil {
		l.FirstMS = ms
		fmt.Fprintf(os.Stderr, "vm-bench: first change (not a sample): %.1f ms\n", ms)
	}
	time.Sleep(spec.Spacing)
	start := time.Now()
	for k := 0; k < spec.Samples && ctx.Err() == nil; k++ {
		if spec.ChangeBudget > 0 && time.Since(start) > spec.ChangeBudget {
			l.CutShort = true
			break
		}
		i := rng.IntN(len(spec.Services))
		s := &spec.Services[i]
		addr := addOffset(base, addrOff+uint32(k)+1)
		ms, acked, err := vmChangeOne(ctx, spec, cs, h, s, addr, rng)
		fmt.Fprintf(os.Stderr, "vm-bench: change %d (%s): %.1f ms %v\n", k, s.Name, ms, err)
		switch {
		case err != nil:
			l.Errors++
		case ms < 0:
			l.Missed++
		default:
			l.Values, acks = append(l.Values, ms), append(acks, acked)
		}
		time.Sleep(spec.Spacing)
	}
	l.Samples, l.AckP50 = len(l.Values), percentile(acks, 0.5)
	l.finish()
	return l
}

// vmChangeOne writes one change and waits for it; ms is -1 when it did not show within
// the spec's ChangeTimeout.
// The Service's expected endpoints follow the change (the next proxy's cold sync checks
// them).
func vmChangeOne(ctx context.Context, spec *VMSpec, cs kubernetes.Interface, h *ipvs.Handle, s *VMService, addr netip.Addr, rng *rand.Rand) (ms, ackMS float64, err error) {
	api := cs.DiscoveryV1().EndpointSlices(spec.Namespace)
	sl, err := api.Get(ctx, s.Name+"-1", metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	sl.Endpoints[rng.IntN(len(sl.Endpoints))].Addresses = []string{addr.String()}
	vs := &ipvs.Service{Address: net.ParseIP(s.ClusterIP).To4(), Protocol: syscall.IPPROTO_TCP, Port: s.Port,
		AddressFamily: syscall.AF_INET, Netmask: 0xffffffff}
	t0 := time.Now()
	if sl.Annotations == nil {
		sl.Annotations = map[string]string{}
	}
	sl.Annotations[triggerAnnotation] = t0.UTC().Format(time.RFC3339Nano)
	if _, err := api.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return 0, 0, fmt.Errorf("conflict (someone else wrote %s): %w", sl.Name, err)
		}
		return 0, 0, err
	}
	ackMS = float64(time.Since(t0).Microseconds()) / 1e3
	s.Endpoints = s.Endpoints[:0]
	for _, e := range sl.Endpoints {
		s.Endpoints = append(s.Endpoints, e.Addresses[0])
	}
	want := net.ParseIP(addr.String()).To4()
	for time.Since(t0) < spec.ChangeTimeout {
		ds, err := h.GetDestinations(vs)
		if err == nil {
			for _, d := range ds {
				if d.Address.Equal(want) && d.Weight > 0 {
					return float64(time.Since(t0).Microseconds()) / 1e3, ackMS, nil
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	return -1, ackMS, nil
}
