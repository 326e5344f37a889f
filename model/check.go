package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Check verifies what backends may rely on beyond the field types (compile guarantees it;
// tests call Check on what compile produces):
//
//   - every port has the Internal class, and the three external classes exactly when it
//     has an external frontend;
//   - ExternalFromPods and ExternalFromNode share External's Empty verdict;
//   - MasqueradeOffCluster, and an ExternalFromPods class that differs from External, are
//     only used when the Node's LocalTraffic recognises pods;
//   - an endpoint set is non-nil exactly when some class uses it;
//   - every hairpin address is a local endpoint of a set in use.
func (t *Table) Check() error {
	var errs []error
	for sp := range t.All() {
		if err := sp.check(t.node.LocalTraffic.Detects()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sp.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (sp *ServicePort) check(detects bool) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !sp.Internal.Exists() {
		fail("no internal class")
	}
	ext := sp.HasExternal()
	for _, c := range []Class{External, ExternalFromPods, ExternalFromNode} {
		if sp.Traffic(c).Exists() != ext {
			fail("class %s exists=%t, external frontends=%t", c, sp.Traffic(c).Exists(), ext)
		}
		if ext && sp.Traffic(c).Empty != sp.External.Empty {
			fail("class %s empty verdict %s differs from external's %s", c, sp.Traffic(c).Empty, sp.External.Empty)
		}
	}
	for _, c := range Classes {
		if sp.Traffic(c).Masquerade == MasqueradeOffCluster && !detects {
			fail("class %s masquerades off-cluster traffic but pods cannot be recognised", c)
		}
	}
	if ext && sp.ExternalFromPods != sp.External && !detects {
		fail("pods are handled apart from external clients but cannot be recognised")
	}
	sp.checkSets(fail)
	return errors.Join(errs...)
}

// checkSets checks that exactly the used endpoint sets are set (the local set is also used
// by a health check) and the hairpin addresses.
func (sp *ServicePort) checkSets(fail func(string, ...any)) {
	used := map[EndpointSet]bool{LocalEndpoints: sp.HealthCheckNodePort != 0}
	for _, c := range Classes {
		if t := sp.Traffic(c); t.Exists() {
			used[t.Endpoints] = true
		}
	}
	for _, s := range []EndpointSet{ClusterEndpoints, LocalEndpoints} {
		if (sp.Endpoints(s) != nil) != used[s] {
			fail("%s endpoints set=%t, used by a class or the health check=%t", s, sp.Endpoints(s) != nil, used[s])
		}
	}
	for _, a := range sp.Hairpin {
		local := func(e Endpoint) bool { return e.Local && e.Addr == a }
		if !slices.ContainsFunc(sp.Cluster, local) && !slices.ContainsFunc(sp.Local, local) {
			fail("hairpin address %s is not a local endpoint", a)
		}
	}
}

// CheckFields verifies the values of sp that a backend writes into kernel rules as text:
// the protocol is TCP, UDP or SCTP, and every address and prefix is of family f and has no
// zone (netip prints a zone after '%', which no rule syntax accepts). The compiler never
// produces other values; a backend checks them so that a bad one costs only its port. The
// error names the field and the value.
func (sp *ServicePort) CheckFields(f Family) error {
	if p := sp.Name.Protocol; p != TCP && p != UDP && p != SCTP {
		return fmt.Errorf("protocol %q is not TCP, UDP or SCTP", p)
	}
	for i, fe := range sp.Frontends {
		if fe.AnyLocalAddr() {
			continue
		}
		if err := checkAddr(fe.Addr, f); err != nil {
			return fmt.Errorf("frontends[%d].addr: %w", i, err)
		}
	}
	for _, set := range []struct {
		field string
		eps   []Endpoint
	}{{"cluster", sp.Cluster}, {"local", sp.Local}} {
		for i, e := range set.eps {
			if err := checkAddr(e.Addr, f); err != nil {
				return fmt.Errorf("%s[%d].addr: %w", set.field, i, err)
			}
		}
	}
	for i, a := range sp.Hairpin {
		if err := checkAddr(a, f); err != nil {
			return fmt.Errorf("hairpin[%d]: %w", i, err)
		}
	}
	for i, p := range sp.SourceRanges {
		if err := checkAddr(p.Addr(), f); err != nil || !p.IsValid() {
			return fmt.Errorf("sourceRanges[%d]: %q is not a prefix of the table's family", i, p)
		}
	}
	return nil
}

// checkAddr checks that a is an address of family f without a zone.
func checkAddr(a netip.Addr, f Family) error {
	switch {
	case !f.Contains(a):
		return fmt.Errorf("%q is not an %s address", a, f)
	case a.Zone() != "":
		return fmt.Errorf("%q has a zone", a)
	}
	return nil
}
