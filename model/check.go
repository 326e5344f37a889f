package model

import (
	"errors"
	"fmt"
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

// checkSets checks that exactly the used endpoint sets are set and the hairpin addresses.
func (sp *ServicePort) checkSets(fail func(string, ...any)) {
	used := map[EndpointSet]bool{}
	for _, c := range Classes {
		if t := sp.Traffic(c); t.Exists() {
			used[t.Endpoints] = true
		}
	}
	for _, s := range []EndpointSet{ClusterEndpoints, LocalEndpoints} {
		if (sp.Endpoints(s) != nil) != used[s] {
			fail("%s endpoints set=%t, used by a class=%t", s, sp.Endpoints(s) != nil, used[s])
		}
	}
	for _, a := range sp.Hairpin {
		local := func(e Endpoint) bool { return e.Local && e.Addr == a }
		if !slices.ContainsFunc(sp.Cluster, local) && !slices.ContainsFunc(sp.Local, local) {
			fail("hairpin address %s is not a local endpoint", a)
		}
	}
}
