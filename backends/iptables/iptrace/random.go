package iptrace

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/portico-dev/portico/model"
)

// statistic holds the options of -m statistic.
type statistic struct {
	random      bool
	probability float64
	hasProb     bool
}

// option parses --mode random and --probability P.
func (s *statistic) option(p *parser, opt string) error {
	if p.neg {
		return fmt.Errorf("! before %s is not modelled", opt)
	}
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	switch opt {
	case "--mode":
		if v != "random" {
			return fmt.Errorf("--mode %s is not modelled (random only)", v)
		}
		s.random = true
	case "--probability":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("--probability %q is not a number in [0, 1]", v)
		}
		s.probability, s.hasProb = f, true
	default:
		return fmt.Errorf("option %s of -m statistic is not modelled", opt)
	}
	return nil
}

// match returns the random match: each path takes one way, with its probability.
func (s *statistic) match() (match, error) {
	if !s.random || !s.hasProb {
		return nil, fmt.Errorf("-m statistic needs --mode random --probability P")
	}
	prob := s.probability
	return func(r *run, _ position) (bool, error) {
		taken, err := r.pick.choose()
		if err != nil {
			return false, err
		}
		if taken {
			r.prob *= prob
		} else {
			r.prob *= 1 - prob
		}
		return taken, nil
	}, nil
}

// recentOpts holds the options of -m recent.
type recentOpts struct {
	action  string // --set, --update or --rcheck
	name    string
	mask    string
	rsource bool
}

// option parses an option of -m recent.
func (o *recentOpts) option(p *parser, opt string) error {
	if p.neg {
		return fmt.Errorf("! before %s is not modelled", opt)
	}
	switch opt {
	case "--set", "--update", "--rcheck":
		if o.action != "" {
			return fmt.Errorf("-m recent with both %s and %s", o.action, opt)
		}
		o.action = opt
	case "--rsource", "--rdest":
		o.rsource = opt == "--rsource"
	case "--reap":
	case "--seconds", "--name", "--mask":
		v, err := p.value(opt)
		if err != nil {
			return err
		}
		o.store(opt, v)
	default:
		return fmt.Errorf("option %s of -m recent is not modelled", opt)
	}
	return nil
}

// store keeps the value of --name and --mask (--seconds does not matter to a first packet).
func (o *recentOpts) store(opt, v string) {
	switch opt {
	case "--name":
		o.name = v
	case "--mask":
		o.mask = v
	}
}

// recentList names a recent list as a rule sees it: its name, the address side it
// records or checks (source with --rsource) and the mask.
type recentList struct {
	name    string
	rsource bool
	mask    netip.Addr
}

// recentKey is what a recent list remembers: the list and the (masked) address.
type recentKey struct {
	list recentList
	addr netip.Addr
}

// recentSet is a --set a path went through, for the affinity check.
type recentSet struct {
	key recentKey
	at  position
}

// match returns the recent match and its list: --set records the address and matches;
// --update and --rcheck match what this path recorded before (a first packet finds the
// lists empty).
func (o *recentOpts) match(fam model.Family) (match, recentList, error) {
	if o.action == "" {
		return nil, recentList{}, fmt.Errorf("-m recent needs --set, --update or --rcheck")
	}
	mask := prefixMask(bitLen(fam), bitLen(fam))
	if o.mask != "" {
		m, err := netip.ParseAddr(o.mask)
		if err != nil || !fam.Contains(m) {
			return nil, recentList{}, fmt.Errorf("-m recent --mask %q is not an %s mask", o.mask, fam)
		}
		mask = m
	}
	list, set := recentList{name: o.name, rsource: o.rsource, mask: mask}, o.action == "--set"
	return func(r *run, at position) (bool, error) {
		a := r.pkt.dst.Addr()
		if list.rsource {
			a = r.pkt.src
		}
		key := recentKey{list: list, addr: masked(a, mask)}
		if set {
			r.recents = append(r.recents, recentSet{key: key, at: at})
			return true, nil
		}
		for _, s := range r.recents {
			if s.key == key {
				return true, nil
			}
		}
		return false, nil
	}, list, nil
}

// bitLen is the length of an address of family f.
func bitLen(f model.Family) int {
	if f == model.IPv6 {
		return 128
	}
	return 32
}
