package compile

import (
	"maps"
	"reflect"
	"runtime"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/model"
)

// Source returns the current Service and its EndpointSlices; a nil Service means it does
// not exist (any more). It must be safe for concurrent use: a large Update reads through
// it from several goroutines.
type Source func(model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice)

// Compiler keeps the compiled form of every Service and builds each new model.State from
// the previous one by recompiling only the Services it is told about.
type Compiler struct {
	node          NodeInfo
	state         *model.State
	contributed   map[model.ServiceName][]portRef
	externalNames map[model.ServiceName]model.ExternalName
}

// NewCompiler returns a Compiler with an empty state.
func NewCompiler() *Compiler {
	return &Compiler{
		state:         &model.State{},
		contributed:   map[model.ServiceName][]portRef{},
		externalNames: map[model.ServiceName]model.ExternalName{},
	}
}

// State returns the last state built.
func (c *Compiler) State() *model.State { return c.state }

// Node returns the NodeInfo of the last build.
func (c *Compiler) Node() NodeInfo { return c.node }

// portRef is a port a Service contributed to the table of one family.
type portRef struct {
	family model.Family
	name   model.ServicePortName
}

// Ports returns the names of the ports Service name contributed to the table of fam.
func (c *Compiler) Ports(name model.ServiceName, fam model.Family) []model.ServicePortName {
	var out []model.ServicePortName
	for _, r := range c.contributed[name] {
		if r.family == fam {
			out = append(out, r.name)
		}
	}
	return out
}

// Known returns the names of every Service the compiler holds rules or an ExternalName for.
func (c *Compiler) Known() []model.ServiceName {
	names := slices.Collect(maps.Keys(c.contributed))
	names = append(names, slices.Collect(maps.Keys(c.externalNames))...)
	return names
}

// NodeChanged reports whether node differs from the NodeInfo of the last build; when it
// does, every Service must be recompiled.
func (c *Compiler) NodeChanged(node NodeInfo) bool { return !reflect.DeepEqual(c.node, node) }

// Update recompiles the Services in dirty with node and returns the new state. Services
// not named keep their compiled form, so after a node change the caller must name all of
// them. Problems are returned; they never stop other Services from compiling.
func (c *Compiler) Update(node NodeInfo, dirty []model.ServiceName, get Source) (*model.State, []error) {
	c.node = node
	if len(c.contributed) == 0 {
		c.contributed = make(map[model.ServiceName][]portRef, len(dirty)) // the first build
	}
	var errs []error
	set := map[model.Family][]*model.ServicePort{}
	remove := map[model.Family][]model.ServicePortName{}
	results := compileAll(node, dirty, get)
	for i, name := range dirty {
		for _, r := range c.contributed[name] {
			remove[r.family] = append(remove[r.family], r.name)
		}
		delete(c.contributed, name)
		delete(c.externalNames, name)
		if results[i].exists {
			errs = append(errs, results[i].errs...)
			c.record(name, results[i].res, set)
		}
	}
	c.state = c.build(node, set, remove)
	return c.state, errs
}

// compiled is the outcome of compiling one Service.
type compiled struct {
	exists bool
	res    Result
	errs   []error
}

// parallelFrom is the number of Services from which compileAll spreads the work over the
// CPUs (a start or a node change compiles every Service: 10,000 take about 80 ms on one).
const parallelFrom = 512

// compileAll compiles the Services named, each independently of the others, on up to
// GOMAXPROCS goroutines when they are many; results are in the order of names.
func compileAll(node NodeInfo, names []model.ServiceName, get Source) []compiled {
	out := make([]compiled, len(names))
	one := func(i int) {
		svc, eps := get(names[i])
		if svc == nil {
			return
		}
		res, errs := Service(svc, eps, node)
		out[i] = compiled{exists: true, res: res, errs: errs}
	}
	workers := min(runtime.GOMAXPROCS(0), 8)
	if len(names) < parallelFrom || workers < 2 {
		for i := range names {
			one(i)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(names) + workers - 1) / workers
	for lo := 0; lo < len(names); lo += chunk {
		wg.Go(func() {
			for i := lo; i < min(lo+chunk, len(names)); i++ {
				one(i)
			}
		})
	}
	wg.Wait()
	return out
}

// record remembers what one Service contributed and queues its ports.
func (c *Compiler) record(name model.ServiceName, res Result, set map[model.Family][]*model.ServicePort) {
	if res.ExternalName != nil {
		c.externalNames[name] = *res.ExternalName
	}
	if len(res.Ports) == 0 {
		return
	}
	var refs []portRef
	for fam, ports := range res.Ports {
		for _, sp := range ports {
			refs = append(refs, portRef{family: fam, name: sp.Name})
			set[fam] = append(set[fam], sp)
		}
	}
	c.contributed[name] = refs
}

// build derives the new tables from the previous ones.
func (c *Compiler) build(node NodeInfo, set map[model.Family][]*model.ServicePort, remove map[model.Family][]model.ServicePortName) *model.State {
	next := &model.State{}
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		settings, enabled := node.Tables[fam]
		if !enabled {
			continue
		}
		prev := c.state.Table(fam)
		if prev == nil {
			prev = model.NewTable(fam, settings)
		}
		next.Tables = append(next.Tables, prev.Update(settings, set[fam], remove[fam]))
	}
	next.ExternalNames = slices.SortedFunc(maps.Values(c.externalNames), func(a, b model.ExternalName) int {
		return model.ServicePortName{Namespace: a.Service.Namespace, Name: a.Service.Name}.Compare(
			model.ServicePortName{Namespace: b.Service.Namespace, Name: b.Service.Name})
	})
	return next
}
