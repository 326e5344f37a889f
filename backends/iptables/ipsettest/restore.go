package ipsettest

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/model"
)

// Restore applies `ipset -exist restore` input. Lines are applied in order; blank lines
// and lines starting with '#' are skipped. When a line fails, Restore returns a
// *RestoreError naming it and the rest of the input is not read. What stays applied is
// what the real tool leaves: ipset sends a run of add (or del) lines to the same set to
// the kernel as one batch, sent when a line of another command or set comes, so a line
// that fails to parse (syntax, family, missing set) loses the batch before it, while a
// line the kernel refuses (create of a different set, full set, swap of different sets)
// comes after its batch was applied. Every other line before the failing one stays applied.
func (s *Sets) Restore(input string) error {
	if s.sets == nil {
		s.sets = map[string]*set{}
	}
	var b batch
	for i, line := range strings.Split(input, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if err := s.command(fields, &b); err != nil {
			if parseTime(fields, err) {
				b.undo()
			}
			return &RestoreError{Line: i + 1, Text: line, Err: err}
		}
		b.done(fields)
	}
	return nil
}

// parseTime reports whether ipset finds err while parsing the line, before it sends the
// pending batch: bad syntax, a wrong family, something the fake does not model, or the
// missing set of an add or del (ipset asks for the set's type to parse the entry).
func parseTime(fields []string, err error) bool {
	return errors.Is(err, ErrSyntax) || errors.Is(err, ErrFamily) || errors.Is(err, ErrUnsupported) ||
		errors.Is(err, ErrNoSet) && isAddDel(fields[0])
}

// batch records how to undo the run of add or del lines to one set that ipset has not
// sent to the kernel yet. A failing line changes nothing, so the steps of the line being
// applied (line) join the run only when it succeeds.
type batch struct {
	key   string // command and set of the run
	steps []func()
	line  []func()
}

// record adds an undo step of the line being applied.
func (b *batch) record(step func()) { b.line = append(b.line, step) }

// done ends a line that succeeded: it continues the run (same command and set) or starts
// a new one; any other command sends the run.
func (b *batch) done(fields []string) {
	key := ""
	if isAddDel(fields[0]) {
		key = addDelName(fields[0]) + " " + fields[1]
	}
	if key == "" || key != b.key {
		b.key, b.steps = key, nil
	}
	b.steps = append(b.steps, b.line...)
	b.line = nil
}

// undo reverts the run, last line first.
func (b *batch) undo() {
	for i := len(b.steps) - 1; i >= 0; i-- {
		b.steps[i]()
	}
	b.key, b.steps = "", nil
}

// isAddDel reports whether cmd is add or del in one of its spellings.
func isAddDel(cmd string) bool { return addDelName(cmd) != "" }

// addDelName returns "add" or "del" for the spellings of those commands, else "".
func addDelName(cmd string) string {
	switch cmd {
	case "add", "-A", "a":
		return "add"
	case "del", "-D", "d":
		return "del"
	}
	return ""
}

// command applies one command line.
func (s *Sets) command(f []string, b *batch) error {
	cmd, args := f[0], f[1:]
	switch cmd {
	case "create", "-N", "n":
		return s.create(args)
	case "add", "-A", "a", "del", "-D", "d":
		return s.addDel(addDelName(cmd) == "add", args, b)
	case "flush", "-F", "f", "destroy", "-X", "x":
		return s.flushDestroy(cmd == "destroy" || cmd == "-X" || cmd == "x", args)
	case "swap", "-W", "w":
		return s.swap(args)
	}
	return fmt.Errorf("%w: unknown command %q", ErrSyntax, cmd)
}

// create applies `create NAME TYPE [options]`.
func (s *Sets) create(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: create needs a name and a type", ErrSyntax)
	}
	st, err := newSet(args[0], args[1], args[2:])
	if err != nil {
		return err
	}
	old, exists := s.sets[st.name]
	if !exists {
		s.sets[st.name] = st
		return nil
	}
	if old.typ != st.typ || old.maxElem != st.maxElem || old.timeout != st.timeout {
		return fmt.Errorf("%w: %q is %s maxelem %d timeout %d", ErrSetExists, st.name, old.typ, old.maxElem, old.timeout)
	}
	return nil
}

// newSet builds an empty set from a create line's name, type and options.
func newSet(name, typ string, opts []string) (*set, error) {
	dims, ok := setTypes[typ]
	if !ok {
		return nil, fmt.Errorf("%w: set type %q", ErrUnsupported, typ)
	}
	st := &set{name: name, typ: typ, dims: dims, family: model.IPv4, hashSize: defaultHashSize,
		maxElem: defaultMaxElem, entries: map[string]entry{}}
	if len(opts)%2 != 0 {
		return nil, fmt.Errorf("%w: option %q needs a value", ErrSyntax, opts[len(opts)-1])
	}
	for i := 0; i < len(opts); i += 2 {
		if err := st.option(opts[i], opts[i+1]); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// option applies one create option to a new set.
func (st *set) option(name, value string) error {
	if name == "family" {
		switch value {
		case "inet":
			st.family = model.IPv4
		case "inet6":
			st.family = model.IPv6
		default:
			return fmt.Errorf("%w: family %q", ErrSyntax, value)
		}
		return nil
	}
	n, err := strconv.ParseUint(value, 10, 32)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a number", ErrSyntax, name, value)
	}
	switch name {
	case "hashsize":
		st.hashSize = hashSize(int(n))
	case "maxelem":
		if n == 0 {
			return fmt.Errorf("%w: maxelem 0", ErrUnsupported)
		}
		st.maxElem = int(n)
	case "timeout":
		st.timeout = int(n)
	default:
		return fmt.Errorf("%w: create option %q", ErrUnsupported, name)
	}
	return nil
}

// hashSize rounds a requested hash size as the kernel does: up to a power of two, at
// least 64.
func hashSize(n int) int {
	if n <= minHashSize {
		return minHashSize
	}
	return 1 << bits.Len(uint(n-1))
}

// addDel applies `add NAME ENTRY` or `del NAME ENTRY`.
func (s *Sets) addDel(add bool, args []string, b *batch) error {
	if len(args) != 2 {
		if len(args) > 2 {
			return fmt.Errorf("%w: entry options %q", ErrUnsupported, args[2:])
		}
		return fmt.Errorf("%w: add and del need a set and an entry", ErrSyntax)
	}
	st, err := s.lookup(args[0])
	if err != nil {
		return err
	}
	e, err := parseEntry(args[1], st.dims, st.family)
	if err != nil {
		return err
	}
	key := e.String(st.dims)
	old, present := st.entries[key]
	switch {
	case !add && present:
		delete(st.entries, key)
		b.record(func() { st.entries[key] = old })
	case !add || present:
	case len(st.entries) >= st.maxElem:
		return fmt.Errorf("%w: %q holds %d", ErrFull, st.name, len(st.entries))
	default:
		st.entries[key] = e
		b.record(func() { delete(st.entries, key) })
	}
	return nil
}

// flushDestroy applies `flush [NAME]` or `destroy [NAME]` (no name: every set).
func (s *Sets) flushDestroy(destroy bool, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: too many arguments", ErrSyntax)
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	sets, err := s.all(name)
	if err != nil {
		return err
	}
	for _, st := range sets {
		if destroy {
			delete(s.sets, st.name)
		} else {
			st.entries = map[string]entry{}
		}
	}
	return nil
}

// swap applies `swap A B`: the two sets exchange their names.
func (s *Sets) swap(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%w: swap needs two sets", ErrSyntax)
	}
	a, err := s.lookup(args[0])
	if err != nil {
		return err
	}
	b, err := s.lookup(args[1])
	if err != nil {
		return err
	}
	if !sameKind(a, b) {
		return fmt.Errorf("%w: %s %s and %s %s", ErrSwap, a.typ, familyName(a.family), b.typ, familyName(b.family))
	}
	a.name, b.name = b.name, a.name
	s.sets[a.name], s.sets[b.name] = a, b
	return nil
}
