package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// elements returns the set elements of sp: its frontends (known, refused, dropped,
// masqueraded per source, firewalled), its ClusterIP addresses and its hairpin endpoints.
func (r renderer) elements(sp *model.ServicePort) []element {
	var out []element
	for _, f := range sp.Frontends {
		for _, a := range r.addrs(f) {
			key := frontendKey(a, sp.Name.Protocol, f.Port)
			out = append(out, element{setFrontends, key})
			if f.Kind == model.ClusterIP {
				out = append(out, element{setClusterIPs, a.String()})
			}
			out = append(out, frontendElements(sp, f, key)...)
		}
	}
	for _, a := range sp.Hairpin {
		out = append(out, element{setHairpin, a.String() + " . " + a.String()})
	}
	return out
}

// frontendElements returns what one address of frontend f adds to the verdict, masquerade
// and firewall sets.
func frontendElements(sp *model.ServicePort, f model.Frontend, key string) []element {
	var out []element
	classes := sp.FrontendClasses(f)
	switch sp.Verdict(classes[len(classes)-1]) {
	case model.Reject:
		out = append(out, element{setEmptyReject, key})
	case model.Drop:
		out = append(out, element{setEmptyDrop, key})
	}
	for _, m := range masqSets(sp, f) {
		out = append(out, element{m, key})
	}
	if f.Kind == model.LoadBalancer && len(sp.SourceRanges) > 0 {
		out = append(out, element{setFirewall, key})
		for _, src := range sp.SourceRanges {
			out = append(out, element{setFirewallOK, key + " . " + src.String()})
		}
	}
	return out
}

// masqSets returns the masquerade sets of frontend f: for each kind of source (pods of
// this node, other sources, the node itself), whether its class masquerades it.
func masqSets(sp *model.ServicePort, f model.Frontend) []string {
	var out []string
	add := func(set string, c model.Class, fromPod bool) {
		t := sp.Traffic(c)
		if sp.Verdict(c) != model.Forward {
			return
		}
		if t.Masquerade == model.MasqueradeAlways || (t.Masquerade == model.MasqueradeOffCluster && !fromPod) {
			out = append(out, set)
		}
	}
	if f.Kind == model.ClusterIP {
		add(setMasqPods, model.Internal, true)
		add(setMasqOthers, model.Internal, false)
		add(setMasqNode, model.Internal, false)
		return out
	}
	add(setMasqPods, model.ExternalFromPods, true)
	add(setMasqOthers, model.External, false)
	add(setMasqNode, model.ExternalFromNode, false)
	return out
}

// moveElements counts a port's elements out and in: an element whose first user arrives
// goes into adds, one whose last user leaves into dels.
func (fs *familyState) moveElements(old, next []element) (adds, dels []element) {
	for _, e := range next {
		fs.elems[e]++
		if fs.elems[e] == 1 {
			adds = append(adds, e)
		}
	}
	for _, e := range old {
		fs.elems[e]--
		if fs.elems[e] <= 0 {
			delete(fs.elems, e)
			dels = append(dels, e)
		}
	}
	return adds, dels
}

// runElements adds (or, with del, deletes) elements in one transaction.
func runElements(ctx context.Context, nft knftables.Interface, es []element, del bool) error {
	if len(es) == 0 {
		return nil
	}
	tx := nft.NewTransaction()
	for _, e := range es {
		el := &knftables.Element{Set: e.set, Key: strings.Split(e.key, " . ")}
		if del {
			tx.Delete(el)
		} else {
			tx.Add(el)
		}
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables table %s: updating %d set elements: %w", TableName, len(es), err)
	}
	return nil
}

// tableFrontends returns the frontends the family's table in the kernel lists: the
// virtual servers an earlier sync (or run) of portico wrote, which it owns. A missing
// table lists none.
func tableFrontends(ctx context.Context, nft knftables.Interface) (map[vsKey]bool, error) {
	els, err := nft.ListElements(ctx, "set", setFrontends)
	if knftables.IsNotFound(err) {
		return map[vsKey]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nftables set %s of table %s: %w", setFrontends, TableName, err)
	}
	out := map[vsKey]bool{}
	for _, el := range els {
		if k, ok := parseFrontend(el.Key); ok {
			out[k] = true
		}
	}
	return out, nil
}

// parseFrontend parses the key of a frontends element (address, protocol as a name or a
// number, port).
func parseFrontend(key []string) (vsKey, bool) {
	if len(key) == 1 {
		key = strings.Split(key[0], " . ")
	}
	if len(key) != 3 {
		return vsKey{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(key[0]))
	port, perr := strconv.ParseUint(strings.TrimSpace(key[2]), 10, 16)
	if err != nil || perr != nil {
		return vsKey{}, false
	}
	p, err := model.ParseProtocol(strings.ToUpper(strings.TrimSpace(key[1])))
	if err != nil {
		n, nerr := strconv.ParseUint(strings.TrimSpace(key[1]), 10, 16)
		var known bool
		if p, known = modelProto(uint16(n)); nerr != nil || !known {
			return vsKey{}, false
		}
	}
	return vsKey{a.Unmap(), p, uint16(port)}, true
}
