// Package endpoints turns the EndpointSlices of a Service into the endpoint sets that the
// model (package model) stores for each Service port.
//
// It works in two steps, both pure functions with no shared state:
//
//   - Merge reads every EndpointSlice of one Service for one IP family, applies the API's
//     defaults to the endpoint conditions, drops duplicate endpoints and groups the result
//     by endpoint port (port name and protocol).
//   - Categorize takes the endpoints of one Service port, the endpoint sets its traffic
//     classes use (compile decides which) and this node's place in the cluster, and
//     returns the endpoints that serve cluster-wide traffic, the endpoints that serve
//     node-local traffic, and whether the Service has any usable endpoint at all. It follows the rules of kube-proxy: ready endpoints
//     are used when there are some, serving-and-terminating ones otherwise, and topology
//     hints narrow down the cluster set.
//
// # Topology and traffic distribution
//
// A Service's spec.trafficDistribution (PreferClose, PreferSameZone, PreferSameNode) and
// the older topology-aware-hints annotation never reach this package directly. The
// EndpointSlice controller translates them into hints on each endpoint: PreferClose and
// PreferSameZone become zone hints (hints.forZones), PreferSameNode becomes node hints
// (hints.forNodes) plus zone hints. Categorize reads only those hints, so a Service whose
// slices carry no hints is load-balanced over every usable endpoint, whatever its spec
// says. Node hints are always honoured (kube-proxy gates them behind the
// PreferSameTrafficDistribution feature, which is on by default).
package endpoints
