// Package harness is the root of portico's end-to-end test harness. Its subpackages
// build the pieces an end-to-end test needs:
//
//   - netns: the topology of network namespaces (control plane, LAN switch, two nodes
//     with pods, an outside client), created with netlink and torn down without a trace;
//   - cluster: a real etcd and kube-apiserver inside the control-plane namespace, a
//     client that reaches it from the root namespace, and Node objects;
//   - traffic: TCP and UDP servers inside pod namespaces and probes that classify what
//     happened (OK, Refused, Timeout, Reset, Unreachable) and who answered.
//
// The self-test (harness_test.go, build tag e2e) needs root:
//
//	go test -tags e2e ./e2e/harness/... -v -count=1
package harness
