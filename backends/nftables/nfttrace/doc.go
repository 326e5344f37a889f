// Package nfttrace is a packet tracer over portico's nftables rules: it follows the first
// packet of a new connection through the table a knftables.Fake holds ("ip portico" or
// "ip6 portico"), the way the kernel would, without a kernel and without root, in
// microseconds per packet. Unit tests use it to run the shared packet-flow table
// (backendtest.RunFlows) against the rules a backend rendered; it implements
// backendtest.Tracer.
//
// What it models:
//
//   - The netfilter hooks of node-a: a packet arriving on an interface traverses
//     prerouting, then input when its (possibly DNATed) destination is an address of
//     node-a, else forward and postrouting. A packet node-a sends traverses output and
//     postrouting; when its destination is still an address of node-a it then comes back
//     in on "lo" through the filter chains of prerouting and input (NAT chains see only
//     the first pass, as conntrack's NAT does).
//   - Base chains ordered by priority within each hook (symbolic priorities such as
//     "dstnat-10" included), their policy, regular chains, and the verdicts accept, drop,
//     reject, jump, goto, return and continue, also as the values of verdict maps. Once a
//     NAT chain of a hook has rewritten the packet, later NAT chains of that hook are
//     skipped.
//   - The expressions and statements portico renders (see parseRule for the list): address,
//     protocol, port, interface and mark matches, anonymous and named sets (interval keys
//     included), concatenations, verdict maps, fib address types, ct state and status,
//     mark rewrites, DNAT to an address or through a numgen endpoint map, masquerade, and
//     updates of dynamic sets.
//   - Random choices: a numgen DNAT is followed for every slot, a numgen comparison both
//     ways, each as a path of its own; the Result gathers every path's endpoint and
//     requires all paths to end in the same verdict.
//
// What it does not model:
//
//   - Conntrack beyond the first packet: every packet is a new connection, dynamic sets
//     (session affinity) start empty, and no reply or later packet is traced.
//   - Routing beyond "is this address one of node-a's" (backendtest.Host.IsLocal): there
//     are no routes, output interfaces, reverse-path filters or martian checks.
//   - Any rule outside portico's table: the other tables of the host (and their verdicts)
//     do not exist for the tracer.
//
// Any expression, statement, hook or chain type it does not know makes Trace return an
// error naming the chain and the rule: nothing is silently ignored.
package nfttrace
