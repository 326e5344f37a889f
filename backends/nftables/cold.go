package nftables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// errChunkFailed stops the rendering of a cold load once one of its transactions failed.
var errChunkFailed = errors.New("an earlier transaction of the cold load failed")

// coldLoad writes the table when the kernel does not hold it yet (a new node, a reboot, a
// cleanup). Nothing is there to protect, so instead of one transaction that holds
// everything it sends a series of bounded ones: the skeleton with the first Service
// ports, then the next ports, each transaction complete for the ports it holds. nft then
// needs memory for one chunk only, the next chunk is rendered while nft loads this one,
// and only a chunk's objects and text exist at a time. Any failure forgets the mirror:
// the next sync is full and, the table now existing, one atomic transaction.
//
// The transactions run on the calling goroutine, which may be bound to a network
// namespace (tests); a helper goroutine only renders.
func (fs *familyState) coldLoad(ctx context.Context, t *model.Table, mark uint32, observe func(int)) error {
	jobs := make(chan func() error)
	failed := make(chan struct{})
	rendered := make(chan error, 1)
	go func() {
		rendered <- fs.renderCold(ctx, t, mark, jobs, failed, observe)
		close(jobs)
	}()
	err := runJobs(jobs, failed)
	if renderErr := <-rendered; err == nil {
		err = renderErr
	}
	if err != nil {
		fs.reset()
		return fmt.Errorf("loading table %s into an empty kernel: %w", tableName, err)
	}
	fs.committed()
	return nil
}

// runJobs runs the transactions in order until one fails; it then closes failed, skips
// the rest and returns the error.
func runJobs(jobs <-chan func() error, failed chan<- struct{}) error {
	var err error
	for j := range jobs {
		if err != nil {
			continue
		}
		if err = j(); err != nil {
			close(failed)
		}
	}
	return err
}

// renderCold renders the table chunk by chunk and hands each chunk to jobs. With nft
// run directly (fs.batched), a chunk is split (coldSplit.take): nft commits what only it
// writes (the skeleton, new endpoint maps, the few elements without a netlink form), then
// one netlink batch (coldPiece) creates the chunk's chains and rules, when every one of
// its rules has a netlink form, and adds its endpoint-map elements and its dispatch and
// cluster-IP elements. nft then parses and holds next to nothing, and no longer reads
// the growing table before each chunk; the kernel binds each endpoint map while it is
// still empty (binding walks the elements), and a chain becomes reachable in the commit
// that fills its endpoints. A chunk whose rules nft must write (session affinity,
// several pod CIDRs, names nft would quote) keeps them in its nft transaction, and a
// dispatch element nft must write goes with the next chunk's nft transaction (the last
// chunk's in one more): after its chain and endpoints either way.
func (fs *familyState) renderCold(ctx context.Context, t *model.Table, mark uint32, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	split := coldSplit{f: fs.r.f}
	err := fs.renderFull(t, mark, existingObjects{}, chunkOps(t, true), func(w *txWriter) error {
		if !fs.batched {
			return fs.sendChunk(ctx, w, coldPiece{}, jobs, failed, observe)
		}
		return fs.sendChunk(ctx, w, split.take(w), jobs, failed, observe)
	})
	if err == nil && len(split.held) > 0 {
		err = fs.sendChunk(ctx, &txWriter{elAdd: split.held}, coldPiece{}, jobs, failed, observe)
	}
	return err
}

// coldSplit splits the chunks of a cold load (renderCold).
type coldSplit struct {
	f fam
	// held are the dispatch elements of the chunk before that nft writes.
	held []knftables.Object
}

// take leaves in w what its nft transaction holds (its setup, its chains and rules if one
// of them has no netlink form, the elements without one but dispatch elements, and the
// dispatch elements held from the chunk before) and returns what follows over netlink;
// it holds w's own dispatch elements without a netlink form back.
func (c *coldSplit) take(w *txWriter) coldPiece {
	p := coldPiece{eps: w.epAdd}
	w.epAdd = nil
	if chains, rules, ok := netObjects(c.f, w.objects); ok {
		p.chains, p.rules, w.objects = chains, rules, nil
	}
	var keep, hold []knftables.Object
	for _, o := range w.elAdd {
		e, isElem := o.(*knftables.Element)
		if isElem {
			if se, ok := encodeSetElem(c.f, e); ok {
				p.elems = append(p.elems, se)
				continue
			}
		}
		if isElem && (e.Map == mapServiceIPs || e.Map == mapServiceNodePorts) {
			hold = append(hold, o)
		} else {
			keep = append(keep, o)
		}
	}
	w.elAdd = append(keep, c.held...)
	c.held = hold
	return p
}

// netObjects returns the chains and rules of a chunk's objects in netlink form, or false
// if one of them has none (then nft writes them all). Every chain of a cold load is new:
// its flush is left out.
func netObjects(f fam, objs []knftables.Object) ([]string, []netRule, bool) {
	var chains []string
	var rules []netRule
	for _, o := range objs {
		switch o := o.(type) {
		case *knftables.Chain:
			if o.Type != nil || o.Hook != nil || o.Comment != nil || !plain(o.Name, maxNameLen) {
				return nil, nil, false
			}
			chains = append(chains, o.Name)
		case flushMarker:
			if _, ok := o.Object.(*knftables.Chain); !ok {
				return nil, nil, false
			}
		case *knftables.Rule:
			r, ok := netRuleOf(f, o)
			if !ok {
				return nil, nil, false
			}
			rules = append(rules, r)
		default:
			return nil, nil, false
		}
	}
	return chains, rules, true
}

// netRule is a rule in netlink form.
type netRule struct {
	chain, comment string
	exprs          []expr.Any
}

// netRuleOf returns r in netlink form, or false if it has none.
func netRuleOf(f fam, r *knftables.Rule) (netRule, bool) {
	if r.Index != nil || r.Handle != nil || !plain(r.Chain, maxNameLen) {
		return netRule{}, false
	}
	out := netRule{chain: r.Chain}
	if r.Comment != nil {
		if !plain(*r.Comment, maxCommentLen) {
			return netRule{}, false
		}
		out.comment = *r.Comment
	}
	exprs, ok := ruleExprs(f, r.Rule)
	out.exprs = exprs
	return out, ok
}

// coldPiece is what a chunk of a cold load sends over netlink after its nft transaction,
// in one batch.
type coldPiece struct {
	chains []string
	rules  []netRule
	eps    []epOp
	elems  []setElem
}

// size returns the number of the piece's operations.
func (p *coldPiece) size() int {
	return len(p.chains) + len(p.rules) + len(p.eps) + len(p.elems)
}

// encodedBytes estimates the size of the piece's batch from above (a chain's message
// takes about 80 bytes, a rule's 150 to 300, an endpoint element 32, a dispatch element
// with its comment about 100), so that its buffer is allocated once.
func (p *coldPiece) encodedBytes() int {
	return 96*len(p.chains) + 320*len(p.rules) + 40*len(p.eps) + 128*len(p.elems) + batchOverhead
}

// describe summarises the piece for an error message.
func (p *coldPiece) describe() string {
	s := fmt.Sprintf("%d chains, %d rules, %d endpoint elements, %d other elements", len(p.chains), len(p.rules), len(p.eps), len(p.elems))
	if len(p.chains) > 0 {
		s += ", chains " + p.chains[0] + " to " + p.chains[len(p.chains)-1]
	}
	return s
}

// batch encodes the piece for family f, in the order the kernel needs: the chains, their
// rules (binding the endpoint maps while these are empty), the endpoint elements, then
// the dispatch and cluster-IP elements; nil for an empty piece.
func (p *coldPiece) batch(f fam) (*nlBatch, error) {
	if p.size() == 0 {
		return nil, nil
	}
	b := newBatch(f)
	b.buf = make([]byte, 0, p.encodedBytes())
	for _, c := range p.chains {
		if err := b.addChain(c); err != nil {
			return nil, err
		}
	}
	for _, r := range p.rules {
		if err := b.addRule(r.chain, r.exprs, r.comment); err != nil {
			return nil, err
		}
	}
	for _, g := range groupByMap(p.eps, len(p.eps)) {
		if err := b.addEndpoints(f, g); err != nil {
			return nil, err
		}
	}
	elems := slices.Clone(p.elems)
	slices.SortStableFunc(elems, func(a, b setElem) int { return strings.Compare(a.set, b.set) })
	for start := 0; start < len(elems); {
		end := start + 1
		for end < len(elems) && elems[end].set == elems[start].set {
			end++
		}
		els := make([]nlElem, 0, end-start)
		for _, e := range elems[start:end] {
			els = append(els, e.el)
		}
		if err := b.addElements(elems[start].set, els); err != nil {
			return nil, err
		}
		start = end
	}
	return b, nil
}

// sendChunk turns w, then the piece p over netlink, into a job and queues it (waiting
// while the previous one runs). The piece is encoded here, while the previous job runs.
func (fs *familyState) sendChunk(ctx context.Context, w *txWriter, p coldPiece, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	n := w.size() + p.size()
	if observe != nil {
		observe(n)
	}
	var run func() error
	if w.size() > 0 {
		run = fs.job(ctx, w)
	}
	batch, err := p.batch(fs.r.f)
	if err != nil {
		return fmt.Errorf("encoding a transaction of %d operations: %w", n, err)
	}
	what := p.describe()
	job := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if run != nil {
			if err := run(); err != nil {
				return fmt.Errorf("transaction of %d operations: %w", n, err)
			}
		}
		if batch != nil {
			if err := execBatch(ctx, batch); err != nil {
				return fmt.Errorf("netlink batch of a transaction of %d operations (%s): %w", n, what, err)
			}
		}
		return nil
	}
	select {
	case jobs <- job:
		return nil
	case <-failed:
		return errChunkFailed
	case <-ctx.Done():
		return ctx.Err()
	}
}
