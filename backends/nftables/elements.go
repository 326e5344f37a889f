package nftables

import (
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/proxier/model"
)

// elem is one element of a shared set or map, as a Service port wants it.
type elem struct {
	set     string
	key     []string
	value   []string // nil for a set element
	comment string
}

// id identifies the element in its set.
func (e elem) id() elemID { return elemID{set: e.set, key: strings.Join(e.key, " . ")} }

// elemID identifies an element: its set and its joined key.
type elemID struct{ set, key string }

// claim is one Service port's wish for an element.
type claim struct {
	owner model.ServicePortName
	elem  elem
}

// elementStore mirrors the elements of the shared sets and maps: who wants each one and
// what the kernel holds. Several Service ports may want the same element (a hairpin pair,
// a cluster IP with several ports); the kernel holds the value of the first owner in name
// order, and the element goes when its last owner does.
type elementStore struct {
	claims map[elemID][]claim
	kernel map[elemID]elem
}

func newElementStore() *elementStore {
	return &elementStore{claims: map[elemID][]claim{}, kernel: map[elemID]elem{}}
}

// replace swaps owner's claims from old to next and returns the ids it touched.
func (s *elementStore) replace(owner model.ServicePortName, old, next []elem) []elemID {
	touched := make([]elemID, 0, len(old)+len(next))
	for _, e := range old {
		id := e.id()
		s.claims[id] = slices.DeleteFunc(s.claims[id], func(c claim) bool { return c.owner == owner })
		if len(s.claims[id]) == 0 {
			delete(s.claims, id)
		}
		touched = append(touched, id)
	}
	for _, e := range next {
		id := e.id()
		cs := append(s.claims[id], claim{owner: owner, elem: e})
		slices.SortFunc(cs, func(a, b claim) int { return a.owner.Compare(b.owner) })
		s.claims[id] = cs
		touched = append(touched, id)
	}
	return touched
}

// reconcile writes to tx what makes the kernel hold the wanted element of every id, and
// records it as done. Deletions are written to del, additions to add, so that the caller
// can order them.
func (s *elementStore) reconcile(ids []elemID, del, add *[]knftables.Object) {
	slices.SortFunc(ids, func(a, b elemID) int {
		if c := strings.Compare(a.set, b.set); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	ids = slices.Compact(ids)
	for _, id := range ids {
		have, inKernel := s.kernel[id]
		var want *elem
		if cs := s.claims[id]; len(cs) > 0 {
			want = &cs[0].elem
		}
		switch {
		case want == nil && inKernel:
			*del = append(*del, have.object())
			delete(s.kernel, id)
		case want != nil && (!inKernel || !slices.Equal(have.value, want.value)):
			if inKernel {
				*del = append(*del, have.object())
			}
			*add = append(*add, want.object())
			s.kernel[id] = *want
		}
	}
}

func (e elem) object() knftables.Object {
	o := &knftables.Element{Key: e.key, Value: e.value}
	if e.value != nil {
		o.Map = e.set
	} else {
		o.Set = e.set
	}
	if e.comment != "" {
		o.Comment = &e.comment
	}
	return o
}
