package nftables

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// Verify implements backends.Verifier. It checks that portico's table of family f exists
// and that each of its fixed chains (the base chains and the helpers every Service goes
// through, such as `services`) holds as many rules as the last full sync wrote: a `nft
// flush ruleset`, a deleted table, a `nft flush table` or a flushed fixed chain are
// reported as backends.ErrRulesMissing. It reads the kernel over netlink, one request for
// the table and one rule dump per fixed chain (about 20), each answered from the chain
// alone: the cost does not grow with the number of Services (`nft list chain` would, as
// nft first reads the whole table). Per-port chains and map elements are not read; the
// hourly full sync rewrites those.
//
// A family without a successful full sync has nothing to verify: its next sync is full.
func (b *Backend) Verify(ctx context.Context, f model.Family) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, ok := b.fams[f]
	if !ok || !fs.ready {
		return nil
	}
	return verifyFixed(ctx, b.kernelReader(f, fs), f, fs.fixedChains(b.opts.MasqueradeMark()), fs.skeletonRules)
}

// fixedChain is a chain of the table's skeleton with the number of rules it holds.
type fixedChain struct {
	name  string
	rules int
}

// fixedChains returns the chains that a full sync writes whatever the Services, with
// their rule counts for the Node settings of the last full sync (fs.r.node).
func (fs *familyState) fixedChains(mark uint32) []fixedChain {
	var out []fixedChain
	for _, bc := range baseChains() {
		out = append(out, fixedChain{bc.name, len(bc.rules)})
	}
	helpers := fs.r.helperChains(mark)
	for _, name := range helperChainOrder {
		out = append(out, fixedChain{name, len(helpers[name])})
	}
	return out
}

// verifyFixed compares the fixed chains of f's table in the kernel, read through kr, with
// chains. written is the number of rules the last full sync wrote into them: when chains
// does not add up to it, the skeleton was written differently from what fixedChains
// says, and Verify cannot tell.
func verifyFixed(ctx context.Context, kr kernelReader, f model.Family, chains []fixedChain, written int) error {
	table := fmt.Sprintf("table %s %s", knftFamily(f), tableName)
	total := 0
	for _, c := range chains {
		total += c.rules
	}
	if total != written {
		return fmt.Errorf("cannot verify %s: its fixed chains should hold %d rules, the last full sync wrote %d", table, total, written)
	}
	found, err := kr.tableExists(ctx)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", table, err)
	}
	if !found {
		return fmt.Errorf("%w: %s is gone", backends.ErrRulesMissing, table)
	}
	for _, c := range chains {
		n, err := kr.countRules(ctx, c.name)
		if err != nil {
			return fmt.Errorf("verifying chain %s of %s: %w", c.name, table, err)
		}
		if n != c.rules {
			return fmt.Errorf("%w: chain %s of %s holds %d rules, the last full sync wrote %d",
				backends.ErrRulesMissing, c.name, table, n, c.rules)
		}
	}
	return nil
}

// kernelReader reads what Verify needs from the kernel.
type kernelReader interface {
	// tableExists reports whether the kernel holds portico's table.
	tableExists(ctx context.Context) (bool, error)
	// countRules returns the number of rules of one of the table's chains; 0 when the
	// kernel has no such chain.
	countRules(ctx context.Context, chain string) (int, error)
}

// kernelReader returns the reader of family f's table: over netlink, or through the
// injected knftables interface (WithInterfaces, which also turns batched off: tests
// verify their knftables.Fake).
func (b *Backend) kernelReader(f model.Family, fs *familyState) kernelReader {
	if b.batched {
		return netlinkReader{family: f}
	}
	return knftReader{nft: fs.nft}
}

// knftReader reads through a knftables interface. With the real nft it would be as
// costly as listing the table (nft reads the whole table before it prints a chain), so
// the backend uses it only for injected interfaces.
type knftReader struct{ nft knftables.Interface }

func (k knftReader) tableExists(ctx context.Context) (bool, error) {
	_, err := k.nft.List(ctx, "chain")
	if knftables.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (k knftReader) countRules(ctx context.Context, chain string) (int, error) {
	rules, err := k.nft.ListRules(ctx, chain)
	if knftables.IsNotFound(err) {
		return 0, nil
	}
	return len(rules), err
}

// netlinkReader reads portico's table of one family with nf_tables netlink requests, in
// the network namespace of the calling thread.
type netlinkReader struct{ family model.Family }

// nftMsg is the netlink message type of nf_tables message m.
func nftMsg(m int) int { return unix.NFNL_SUBSYS_NFTABLES<<8 | m }

// request returns a netlink request of nf_tables message m for the reader's family.
func (r netlinkReader) request(m, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(nftMsg(m), flags)
	proto := uint8(unix.NFPROTO_IPV4)
	if r.family == model.IPv6 {
		proto = unix.NFPROTO_IPV6
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: proto, Version: nl.NFNETLINK_V0})
	return req
}

// tableExists asks for the table (NFT_MSG_GETTABLE): ENOENT means it is gone.
func (r netlinkReader) tableExists(context.Context) (bool, error) {
	req := r.request(unix.NFT_MSG_GETTABLE, 0)
	req.AddData(nl.NewRtAttr(unix.NFTA_TABLE_NAME, nl.ZeroTerminated(tableName)))
	_, err := req.Execute(unix.NETLINK_NETFILTER, uint16(nftMsg(unix.NFT_MSG_NEWTABLE)))
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("netlink NFT_MSG_GETTABLE: %w", err)
	}
	return true, nil
}

// countRules dumps the rules of one chain (NFT_MSG_GETRULE with the table and chain
// set): the kernel finds the chain by name and walks its rules only. A dump interrupted
// by a concurrent change of the ruleset cannot tell.
func (r netlinkReader) countRules(_ context.Context, chain string) (int, error) {
	req := r.request(unix.NFT_MSG_GETRULE, unix.NLM_F_DUMP)
	req.AddData(nl.NewRtAttr(unix.NFTA_RULE_TABLE, nl.ZeroTerminated(tableName)))
	req.AddData(nl.NewRtAttr(unix.NFTA_RULE_CHAIN, nl.ZeroTerminated(chain)))
	n := 0
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, uint16(nftMsg(unix.NFT_MSG_NEWRULE)), func([]byte) bool {
		n++
		return true
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("netlink NFT_MSG_GETRULE: %w", err)
	}
	return n, nil
}
