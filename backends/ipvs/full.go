package ipvs

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// fullSync makes IPVS and the dummy interface match t for the family: it lists the
// kernel's virtual servers, writes each wanted one against what the kernel holds (so a
// sync that failed half-way, or someone's ipvsadm -C, is repaired), binds the wanted
// addresses, then deletes the virtual servers portico owns that t no longer has and
// unbinds their addresses. Draining real servers stay draining.
func (fs *familyState) fullSync(ctx context.Context, k kernel, r renderer, t *model.Table) error {
	fs.reset()
	kern, err := fs.listKernel(k)
	if err != nil {
		return err
	}
	bound, err := k.links.Addrs(ctx, fs.f)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", DeviceName, err)
	}
	prev, err := tableFrontends(ctx, k.nft)
	if err != nil {
		return err
	}
	if err := fs.writeTable(ctx, k, r, t); err != nil {
		return err
	}
	for _, o := range fs.plan(r, t) {
		l, exists := kern[o.key]
		if err := fs.applyVS(k, o.virtualServer, o.port, l.dests, exists, exists && sameSettings(l.svc, &o.virtualServer)); err != nil {
			return err
		}
		fs.ports[o.port] = append(fs.ports[o.port], o.key)
		if o.bound {
			fs.addrs[o.key.addr]++
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(fs.addrs), netip.Addr.Compare) {
		if !slices.Contains(bound, a) {
			if err := k.links.AddAddr(ctx, a); err != nil {
				return fmt.Errorf("binding %s to %s: %w", a, DeviceName, err)
			}
		}
	}
	return fs.removeStale(ctx, k, kern, bound, prev)
}

// writeTable rewrites the family's nftables table in one transaction: its chains, and
// every port's set elements.
func (fs *familyState) writeTable(ctx context.Context, k kernel, r renderer, t *model.Table) error {
	tx := k.nft.NewTransaction()
	skeleton(tx, fs.f, k.mark, t.Node())
	for _, p := range t.Node().ServiceCIDRs {
		tx.Add(&knftables.Element{Set: setServiceCIDRs, Key: []string{p.String()}})
	}
	for sp := range t.All() {
		es := r.elements(sp)
		adds, _ := fs.moveElements(nil, es)
		fs.setPortElements(sp.Name, es)
		for _, e := range adds {
			tx.Add(&knftables.Element{Set: e.set, Key: strings.Split(e.key, " . ")})
		}
	}
	if err := k.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("writing nftables table %s %s: %w", newNFTFamily(fs.f).ip, TableName, err)
	}
	return nil
}

// plan renders every port of t; a frontend two ports claim goes to the first by name.
func (fs *familyState) plan(r renderer, t *model.Table) []owned {
	var out []owned
	seen := map[vsKey]bool{}
	for sp := range t.All() {
		for _, vs := range r.render(sp) {
			if !seen[vs.key] {
				seen[vs.key] = true
				out = append(out, owned{virtualServer: vs, port: sp.Name})
			}
		}
	}
	return out
}

// listKernel returns the kernel's virtual servers of the family with their real servers.
func (fs *familyState) listKernel(k kernel) (map[vsKey]listed, error) {
	svcs, err := k.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("listing the IPVS virtual servers: %w", err)
	}
	out := map[vsKey]listed{}
	for _, s := range svcs {
		key, ok := keyOf(s)
		if !ok || model.FamilyOf(key.addr) != fs.f {
			continue
		}
		ds, err := k.h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("listing the real servers of IPVS virtual server %s: %w", key, err)
		}
		l := listed{svc: s, dests: map[netip.AddrPort]int{}}
		for _, d := range ds {
			l.dests[destAddr(d)] = d.Weight
		}
		out[key] = l
	}
	return out, nil
}

// removeStale deletes the virtual servers the kernel holds that portico owns and no longer
// wants, and unbinds the addresses no wanted virtual server uses. portico owns a virtual
// server whose address is bound to its dummy interface, or that its nftables table listed
// as a frontend before this sync (a NodePort on a node address), unless
// ipvs.excludeCIDRs holds the address; any other is someone else's.
func (fs *familyState) removeStale(ctx context.Context, k kernel, kern map[vsKey]listed, bound []netip.Addr, prev map[vsKey]bool) error {
	for _, key := range slices.SortedFunc(maps.Keys(kern), vsKey.compare) {
		if _, ok := fs.vs[key]; ok || k.excluded(key.addr) {
			continue
		}
		if !slices.Contains(bound, key.addr) && !prev[key] {
			continue
		}
		if err := fs.deleteVS(k, key); err != nil {
			return err
		}
	}
	for _, a := range bound {
		if fs.addrs[a] == 0 {
			if err := k.links.DelAddr(ctx, a); err != nil {
				return fmt.Errorf("unbinding %s from %s: %w", a, DeviceName, err)
			}
		}
	}
	return nil
}
