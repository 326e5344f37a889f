package proxier

import (
	"slices"
	"sync"

	"github.com/portico-dev/portico/model"
)

// sliceIndex holds the EndpointSlice records of each Service, as the event handlers
// deliver them (so a sync never sees a slice before its event marked the Service dirty).
// It replaces an informer index, whose set per Service costs several times more.
type sliceIndex struct {
	mu sync.RWMutex
	m  map[model.ServiceName][]*sliceRecord
}

func newSliceIndex() *sliceIndex {
	return &sliceIndex{m: map[model.ServiceName][]*sliceRecord{}}
}

// serviceOf returns the Service a record belongs to, and false for a slice without the
// service-name label.
func serviceOf(r *sliceRecord) (model.ServiceName, bool) {
	return model.ServiceName{Namespace: r.namespace, Name: r.service}, r.service != ""
}

// put adds r, replacing the record of the same slice under its Service.
func (x *sliceIndex) put(r *sliceRecord) {
	svc, ok := serviceOf(r)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	rs := x.m[svc]
	if i := slices.IndexFunc(rs, func(o *sliceRecord) bool { return o.name == r.name }); i >= 0 {
		rs = slices.Clone(rs) // readers may hold the old array
		rs[i] = r
	} else {
		rs = append(slices.Clip(rs), r)
	}
	x.m[svc] = rs
}

// remove drops the record of r's slice from r's Service.
func (x *sliceIndex) remove(r *sliceRecord) {
	svc, ok := serviceOf(r)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	rs := slices.DeleteFunc(slices.Clone(x.m[svc]), func(o *sliceRecord) bool { return o.name == r.name })
	if len(rs) == 0 {
		delete(x.m, svc)
		return
	}
	x.m[svc] = slices.Clip(rs)
}

// get returns the records of a Service's slices (the caller must not modify the array).
func (x *sliceIndex) get(svc model.ServiceName) []*sliceRecord {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.m[svc]
}
