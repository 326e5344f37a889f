package nftables

import (
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// elem is one element of a shared set or map, as a Service port wants it. Its key and
// value are written as nft writes them (fields joined with " . "); value is empty for a
// set element. Map elements carry their owner's name as comment (portComment, bounded and
// escaped), set elements none; the comment is not stored (at 10,000 Services the mirror
// holds ~30,000 elements).
type elem struct {
	set, key, value string
}

// id identifies the element in its set.
func (e elem) id() elemID { return elemID{set: e.set, key: e.key} }

// elemID identifies an element: its set and its key.
type elemID struct{ set, key string }

// claim is one Service port's wish for an element's value.
type claim struct {
	owner model.ServicePortName
	value string
}

// entry is one element: the ports that want it (sorted by name) and what the kernel holds.
// Entries are held by value in the store's map (one allocation less per element).
type entry struct {
	claims   []claim
	kernel   string // the value the kernel holds (when inKernel)
	inKernel bool
}

// elementStore mirrors the elements of the shared sets and maps: who wants each one and
// what the kernel holds. Several Service ports may want the same element (a hairpin pair,
// a cluster IP with several ports); the kernel holds the value of the first owner in name
// order, and the element goes when its last owner does.
type elementStore struct {
	entries map[elemID]entry
}

func newElementStore() *elementStore {
	return &elementStore{entries: map[elemID]entry{}}
}

// replace swaps owner's claims from old to next and returns the ids it touched.
func (s *elementStore) replace(owner model.ServicePortName, old, next []elem) []elemID {
	touched := make([]elemID, 0, len(old)+len(next))
	for _, e := range old {
		id := e.id()
		if en, ok := s.entries[id]; ok {
			en.claims = slices.DeleteFunc(en.claims, func(c claim) bool { return c.owner == owner })
			s.entries[id] = en
		}
		touched = append(touched, id)
	}
	for _, e := range next {
		id := e.id()
		en := s.entries[id]
		en.claims = append(en.claims, claim{owner: owner, value: e.value})
		slices.SortFunc(en.claims, func(a, b claim) int { return a.owner.Compare(b.owner) })
		s.entries[id] = en
		touched = append(touched, id)
	}
	return touched
}

// reconcile writes what makes the kernel hold the wanted element of every id, and records
// it as done. Deletions are written to del, additions to add, so that the caller can order
// them.
func (s *elementStore) reconcile(ids []elemID, del, add *[]knftables.Object) {
	slices.SortFunc(ids, func(a, b elemID) int {
		if c := strings.Compare(a.set, b.set); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for _, id := range slices.Compact(ids) {
		en, ok := s.entries[id]
		if !ok {
			continue
		}
		switch {
		case len(en.claims) == 0:
			if en.inKernel {
				*del = append(*del, elemObject(id, claim{}))
			}
			delete(s.entries, id)
		case !en.inKernel || en.kernel != en.claims[0].value:
			if en.inKernel {
				*del = append(*del, elemObject(id, claim{}))
			}
			*add = append(*add, elemObject(id, en.claims[0]))
			en.kernel, en.inKernel = en.claims[0].value, true
			s.entries[id] = en
		}
	}
}

// elemObject returns the knftables element of id with the value of c; a map element added
// for an owner carries the owner's name as comment (portComment).
func elemObject(id elemID, c claim) knftables.Object {
	o := &knftables.Element{Key: strings.Split(id.key, " . ")}
	if !isMap(id.set) {
		o.Set = id.set
		return o
	}
	o.Map = id.set
	if c.value != "" {
		o.Value = strings.Split(c.value, " . ")
	}
	if c.owner != (model.ServicePortName{}) {
		o.Comment = ptr(portComment(c.owner))
	}
	return o
}

// isMap reports whether a shared set is a map.
func isMap(set string) bool {
	switch set {
	case mapServiceIPs, mapServiceNodePorts, mapNoEndpointServices, mapNoEndpointNodePort:
		return true
	}
	return false
}
