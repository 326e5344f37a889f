// Package backendtest is the test kit every backend shares, so that the nftables, iptables
// and IPVS backends are checked against the same expectations without copying test code:
//
//   - the fixtures: Kubernetes objects holding every kind of Service (LoadObjects,
//     ObjectFiles), node-a of the e2e topology (NodeA) and the node settings the
//     every-kind scenario runs under (NodeVariants), compiled into a model.State by
//     Compile;
//   - golden files with an -update flag (CheckGolden, FirstDiff);
//   - the network-namespace helper of the kernel tests (EnterFreshNetns);
//   - the backend-neutral packet-flow table (testdata/flows.yaml, read by LoadFlows): for
//     a set of Services, where a new connection starts, which frontend it targets and
//     what must happen (which endpoints answer and whether they see the client's address,
//     or a refusal, or a silent drop). The e2e suite runs the table with real packets
//     through a real kernel; RunFlows runs it in a unit test through a backend's rendered
//     rules with the backend's packet tracer (a Tracer), in seconds and without root.
package backendtest
