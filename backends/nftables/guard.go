package nftables

import (
	"fmt"

	"github.com/portico-dev/portico/model"
)

// renderPort renders sp (renderer.render) for a port that has old in the kernel (nil for
// none), guarded: the fields that reach the kernel as text are checked first, the plan's
// names and comments after, and a panic of the renderer is recovered. Any of these is
// returned as an error (the caller skips the port), and the endpoint-map blocks the
// render took are given back.
func (fs *familyState) renderPort(sp *model.ServicePort, old *portState) (plan *portPlan, err error) {
	var taken []block
	slots := func(chain string, p model.Protocol, n int) block {
		b := fs.slotFunc(old)(chain, p, n)
		if ob, ok := old.groupBlock(chain); !ok || ob != b {
			taken = append(taken, b)
		}
		return b
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering its rules failed: %v", r)
		}
		if err != nil {
			for _, b := range taken {
				fs.slots.release(b)
			}
			plan = nil
		}
	}()
	if err := sp.CheckFields(fs.r.f.family); err != nil {
		return nil, err
	}
	plan = fs.r.render(sp, slots)
	return plan, plan.check()
}

// check verifies what the renderer built from API names: every chain and set name is an
// identifier nft takes and the kernel holds, every comment fits in nft's quotes and
// limit. names.go makes them so; this catches a renderer that does not.
func (p *portPlan) check() error {
	if err := checkComment(p.comment); err != nil {
		return fmt.Errorf("rule comment: %w", err)
	}
	for _, c := range p.chains {
		if err := checkName(c.name); err != nil {
			return fmt.Errorf("chain name: %w", err)
		}
	}
	for _, a := range p.affinity {
		if err := checkName(a.name); err != nil {
			return fmt.Errorf("affinity set name: %w", err)
		}
		if err := checkComment(a.comment); err != nil {
			return fmt.Errorf("affinity set %s comment: %w", a.name, err)
		}
	}
	return nil
}

// checkName checks that s is an nft identifier (a letter first, then letters, digits and
// "-/_.") of at most maxNameLen bytes.
func checkName(s string) error {
	ok := len(s) > 0 && s[0] >= 'a' && s[0] <= 'z' &&
		allBytes(s, func(c byte) bool { return nameByte(c) || c == '_' || c == '.' })
	switch {
	case !ok:
		return fmt.Errorf("%q is not an nft identifier", s)
	case len(s) > maxNameLen:
		return fmt.Errorf("%q has %d bytes, more than the kernel's %d", s, len(s), maxNameLen)
	}
	return nil
}

// checkComment checks that s fits in an nft comment as it is.
func checkComment(s string) error {
	switch {
	case !allBytes(s, commentByte):
		return fmt.Errorf("%q holds a byte that cannot be written between nft's quotes", s)
	case len(s) > maxCommentLen:
		return fmt.Errorf("%q has %d bytes, more than nft's %d", s, len(s), maxCommentLen)
	}
	return nil
}
