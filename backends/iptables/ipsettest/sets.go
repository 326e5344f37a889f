package ipsettest

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/portico-dev/portico/model"
)

// Defaults of ipset create, as ipset save prints them.
const (
	defaultHashSize = 1024
	defaultMaxElem  = 65536
	minHashSize     = 64
)

// Sets is the fake's state: the sets by name. The zero value holds no sets, as in a fresh
// network namespace. Sets is not safe for concurrent use.
type Sets struct {
	sets map[string]*set
}

// set is one set.
type set struct {
	name     string
	typ      string
	dims     []component
	family   model.Family
	hashSize int
	maxElem  int
	timeout  int // 0: none
	entries  map[string]entry
}

// header prints the set's create line as ipset save does.
func (s *set) header() string {
	h := fmt.Sprintf("create %s %s family %s hashsize %d maxelem %d", s.name, s.typ, familyName(s.family), s.hashSize, s.maxElem)
	if s.timeout > 0 {
		h += fmt.Sprintf(" timeout %d", s.timeout)
	}
	return h
}

// sortedEntries returns the set's entries as ipset save prints them, sorted.
func (s *set) sortedEntries() []string {
	out := make([]string, 0, len(s.entries))
	for k := range s.entries {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Names returns the names of the sets, sorted.
func (s *Sets) Names() []string {
	names := make([]string, 0, len(s.sets))
	for n := range s.sets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Entries returns the entries of a set as ipset save prints them, sorted, and whether the
// set exists.
func (s *Sets) Entries(name string) ([]string, bool) {
	st, ok := s.sets[name]
	if !ok {
		return nil, false
	}
	return st.sortedEntries(), true
}

// Save returns the sets as `ipset save` prints them, without the fields that vary from
// run to run (bucketsize, initval): each set's create line, then its add lines; the sets
// sorted by name and the entries of each set sorted.
func (s *Sets) Save() string {
	var b strings.Builder
	for _, n := range s.Names() {
		st := s.sets[n]
		b.WriteString(st.header() + "\n")
		for _, e := range st.sortedEntries() {
			fmt.Fprintf(&b, "add %s %s\n", n, e)
		}
	}
	return b.String()
}

// lookup returns the named set or ErrNoSet.
func (s *Sets) lookup(name string) (*set, error) {
	st, ok := s.sets[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoSet, name)
	}
	return st, nil
}

// all returns the sets named, or every set when name is "".
func (s *Sets) all(name string) ([]*set, error) {
	if name != "" {
		st, err := s.lookup(name)
		return []*set{st}, err
	}
	out := make([]*set, 0, len(s.sets))
	for _, n := range s.Names() {
		out = append(out, s.sets[n])
	}
	return out, nil
}

// sameKind reports whether two sets can be swapped: same type and family.
func sameKind(a, b *set) bool {
	return a.typ == b.typ && a.family == b.family && slices.Equal(a.dims, b.dims)
}
