package iptables

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portico-dev/portico/model"
)

// fullSync writes every chain and set of the family from t, and deletes the chains of an
// earlier run or state that are no longer used. Planning and the kernel overlap: a
// goroutine renders the Service ports and builds iptables-restore inputs (pieces) while
// this one runs them (at 10,000 Services planning takes about a quarter of a second; the
// restores two to three), and with iptables-nft two pieces that do not depend on each
// other run at once (inFlight). The planner never runs a program; fullSync returns once
// every program it started has ended.
//
// Order: the sets are created if missing (a rule naming a set needs it), then the fixed
// chains alone (every per-port chain may jump to them), then the pieces; before the last
// piece (the dispatch tree's upper chains, the deletions and the jumps from the built-in
// chains that a listing did not show), once every piece is done, one ipset restore fills
// a temporary twin of each set and swaps it in.
func (fs *familyState) fullSync(ctx context.Context, k kernel, t *model.Table, mark uint32) error {
	var missing []jump
	if !fs.listed {
		l, err := fs.listing(ctx, k)
		if err != nil {
			return err
		}
		fs.chains = l.chains
		missing = missingJumps(l.jumps)
	}
	inputs, stop := make(chan fullInput, 2), make(chan struct{})
	var c *change
	go func() {
		defer close(inputs)
		c = fs.planFull(t, mark, missing, func(in fullInput) bool {
			select {
			case inputs <- in:
				return true
			case <-stop:
				return false
			}
		})
	}()
	err := fs.runInputs(ctx, k, inputs, stop)
	if err != nil {
		return err // inputs is closed: the planner is done with fs
	}
	fs.ready, fs.listed = true, true
	return c.skippedError(fs.x.f)
}

// fullInput is one step of a full sync: an iptables-restore input, or the sets' ipset
// restore input. It may start once the inputs before after are done (inFlight).
type fullInput struct {
	sets  bool
	data  []byte
	after int
}

// runInputs runs the planner's inputs until it closes the channel, up to fs.inFlight at a
// time, each once the inputs it depends on are done. After a failure it tells the planner
// to stop, lets the running inputs end and drains the channel, so that the planner and
// every program have returned when runInputs does.
func (fs *familyState) runInputs(ctx context.Context, k kernel, inputs <-chan fullInput, stop chan struct{}) error {
	r := newInFlight(fs.inFlight, func() { close(stop) })
	setsReady, n := false, 0
	for in := range inputs {
		if !r.ready(in.after) {
			continue
		}
		if !in.sets && !setsReady {
			// The first restore needs the sets its rules name: none runs yet.
			if err := k.IPSetRestore(ctx, fs.createSetsInput()); err != nil {
				r.fail(fmt.Errorf("ipset restore creating the %s sets: %w", fs.x.f, err))
				continue
			}
		}
		setsReady = true
		if in.sets {
			// Every input before it is done: nothing runs beside it.
			r.start(func() (func() error, error) {
				if err := k.IPSetRestore(ctx, in.data); err != nil {
					return nil, fmt.Errorf("ipset restore of the %s sets: %w", fs.x.f, err)
				}
				return func() error { return nil }, nil
			})
			continue
		}
		n++
		r.start(fs.restoreStarter(ctx, k, n, in.data))
	}
	return r.wait()
}

// restoreStarter returns the start of a full sync's restore number n, for inFlight.
func (fs *familyState) restoreStarter(ctx context.Context, k kernel, n int, data []byte) func() (func() error, error) {
	failed := func(err error) error {
		return fmt.Errorf("iptables-restore %d of a full sync of every %s chain: %w", n, fs.x.f, &restoreFailure{data, err})
	}
	return func() (func() error, error) {
		wait, err := k.StartRestore(ctx, fs.x.f, data)
		if err != nil {
			return nil, failed(err)
		}
		return func() error {
			if err := wait(); err != nil {
				return failed(err)
			}
			return nil
		}, nil
	}
}

// createSetsInput creates the sets that do not exist yet (ipset -exist leaves the others).
func (fs *familyState) createSetsInput() []byte {
	var b strings.Builder
	for _, k := range setKinds {
		b.WriteString(fs.createLine(setName(fs.x.f, k.kind), k.typ))
	}
	return []byte(b.String())
}

// fullPlanner holds a full sync's planning between two pieces.
type fullPlanner struct {
	fs      *familyState
	c       *change
	emit    func(fullInput) bool
	pending piece          // chains written since the last piece
	placed  map[string]int // the input each chain written so far is in (pending: inputs)
	inputs  int            // inputs handed over
}

// planFull resets the mirror and plans a full sync of t, handing each input to emit as
// soon as it is complete (emit returns false: stop). The ports are rendered in the order
// of the first dispatch-tree leaf their frontends may use (leafKey); once every port whose
// key comes before a leaf is rendered, that leaf's rules are known and it is written, with
// the per-port chains it jumps to in the same input where possible (iptables-nft-restore
// asks the kernel about every jump target the input does not declare). Pieces end at such
// points, after about fs.pieceRules rules (0: one piece).
func (fs *familyState) planFull(t *model.Table, mark uint32, missing []jump, emit func(fullInput) bool) *change {
	known := fs.chains
	fs.chains = map[string]chainState{}
	fs.resetMirror()
	p := &fullPlanner{fs: fs, c: newChange(true), emit: emit, placed: map[string]int{}}
	r := newRenderer(fs.x, t.Node(), mark)
	fixed, late := splitFixed(r.fixedChains(fs.x))
	for _, fc := range fixed {
		p.write(fc.table, fc.name, fc.rules)
	}
	pieced := fs.pieceRules > 0 && t.Len() > 0 // a table without ports: one input
	if pieced && !p.flush(false) {
		// The fixed chains alone: their restore runs while the first ports are planned,
		// and every later piece may start as soon as it is done.
		return p.c
	}
	ports := keyedPorts(t)
	for i, kp := range ports {
		if plan := p.c.renderPort(r, kp.sp, fs.refused[kp.sp.Name]); plan != nil {
			fs.applyPort(p.c, kp.sp.Name, nil, plan)
			p.noteWritten(plan)
		}
		if i+1 < len(ports) && ports[i+1].key != kp.key && !p.leavesBefore(ports[i+1].key) {
			return p.c
		}
	}
	if pieced && !p.lastLeaves() {
		return p.c
	}
	for _, ch := range []string{chainServices, chainNodePorts, chainNodePortsEmpty} {
		p.c.dirty[ch] = true
	}
	for _, fc := range late {
		p.write(fc.table, fc.name, fc.rules)
	}
	p.finish(known, missing)
	return p.c
}

// splitFixed returns the fixed chains that jump only to fixed chains of the first list
// (the per-port chains jump to them: they go first) and the others, which jump to a
// chain written at the end of a full sync (PORTICO-CHECKS to PORTICO-NP-EMPTY).
func splitFixed(all []fixedChain) (first, late []fixedChain) {
	isLate := map[string]bool{}
	fixed := map[string]bool{}
	for _, fc := range all {
		fixed[fc.name] = true
	}
	for changed := true; changed; {
		changed = false
		for _, fc := range all {
			for _, rule := range fc.rules {
				t := jumpTarget(rule)
				if !isLate[fc.name] && strings.HasPrefix(t, chainPrefix) && (!fixed[t] || isLate[t]) {
					isLate[fc.name], changed = true, true
				}
			}
		}
	}
	for _, fc := range all {
		if isLate[fc.name] {
			late = append(late, fc)
		} else {
			first = append(first, fc)
		}
	}
	return first, late
}

// keyedPort is a Service port and the first dispatch-tree leaf its frontends may use.
type keyedPort struct {
	key string
	sp  *model.ServicePort
}

// keyedPorts returns t's ports in the order of their keys, then of their names.
func keyedPorts(t *model.Table) []keyedPort {
	var out []keyedPort
	for sp := range t.All() {
		out = append(out, keyedPort{leafKey(sp), sp})
	}
	slices.SortFunc(out, func(a, b keyedPort) int {
		return cmp.Or(strings.Compare(a.key, b.key), a.sp.Name.Compare(b.sp.Name))
	})
	return out
}

// leafKey returns the smallest name of the dispatch-tree leaves that sp's frontends may
// put rules in (dispatchRule): no leaf of a larger name holds a rule of sp.
func leafKey(sp *model.ServicePort) string {
	key := ""
	for i, f := range sp.Frontends {
		var leaf string
		if f.Kind == model.NodePort {
			leaf = portLeaf(sp.Name.Protocol, f.Port)
		} else {
			leaf = addrLeaf(f.Addr)
		}
		if i == 0 || leaf < key {
			key = leaf
		}
	}
	return key
}

// write writes a chain into the pending piece.
func (p *fullPlanner) write(table, name string, rules []string) {
	p.fs.writeChain(p.c, table, name, rules)
	p.add(name)
}

// add puts a chain that c writes into the pending piece.
func (p *fullPlanner) add(name string) {
	p.placed[name] = p.inputs
	p.pending.write = append(p.pending.write, name)
	p.pending.rules += len(p.c.write[name].rules) + 1
}

// noteWritten puts a rendered port's chains into the pending piece.
func (p *fullPlanner) noteWritten(plan *portPlan) {
	for _, ch := range plan.chains {
		p.add(ch.name)
	}
}

// leavesBefore writes every dirty leaf whose name is smaller than key (all their rules are
// known), then hands the pending piece over if it is large enough. It returns false when
// the consumer asked to stop.
func (p *fullPlanner) leavesBefore(key string) bool {
	var ready []string
	for ch := range p.c.dirty {
		if r, _ := p.fs.x.rankOf(ch); r == rankLeaf && ch < key {
			ready = append(ready, ch)
		}
	}
	slices.Sort(ready)
	for _, ch := range ready {
		delete(p.c.dirty, ch)
		p.fs.rewriteShared(p.c, ch)
		if _, ok := p.c.write[ch]; ok {
			p.add(ch)
		}
	}
	if p.fs.pieceRules == 0 || p.pending.rules < p.fs.pieceRules {
		return true
	}
	return p.flush(false)
}

// lastLeaves writes the leaves not written yet and hands them over, with the ports they
// jump to, as a piece of its own: only the upper chains of the tree, the deletions and the
// jumps wait for every piece. It returns false when the consumer asked to stop.
func (p *fullPlanner) lastLeaves() bool {
	if !p.leavesBefore(afterEveryName) {
		return false
	}
	return len(p.pending.write) == 0 || p.flush(false)
}

// afterEveryName sorts after every chain name.
const afterEveryName = "\xff"

// flush hands the pending piece over, to start once every earlier input is done (last)
// or once those that write a chain it jumps to are.
func (p *fullPlanner) flush(last bool) bool {
	after := p.inputs
	if !last {
		after = p.pending.after(p.c, p.placed, p.inputs)
	}
	in := p.pending.input(p.c, p.fs.x.descending)
	p.pending = piece{}
	p.inputs++
	return p.emit(fullInput{data: in, after: after})
}

// after returns the number of the first input that a piece, input number n, does not
// depend on: one after the last earlier input that writes a chain the piece jumps to.
func (pc piece) after(c *change, placed map[string]int, n int) int {
	after := 0
	for _, name := range pc.write {
		for _, rule := range c.write[name].rules {
			if i, ok := placed[jumpTarget(rule)]; ok && i < n {
				after = max(after, i+1)
			}
		}
	}
	return after
}

// finish writes the remaining shared chains, deletes the chains the kernel held that t
// no longer needs, and hands over the sets and the last piece (with the missing jumps).
func (p *fullPlanner) finish(known map[string]chainState, missing []jump) {
	p.fs.finishShared(p.c)
	for _, ch := range slices.Sorted(maps.Keys(p.c.write)) {
		if _, ok := p.placed[ch]; !ok {
			p.add(ch)
		}
	}
	for name, st := range known {
		if _, ok := p.fs.chains[name]; !ok {
			p.c.remove[name] = st.table
			p.pending.remove = append(p.pending.remove, name)
		}
	}
	slices.Sort(p.pending.remove)
	p.pending.jumps = missing
	p.c.jumps = missing
	if !p.emit(fullInput{sets: true, data: p.fs.fullSetsInput(), after: p.inputs}) {
		return
	}
	p.inputs++
	p.flush(true)
}
