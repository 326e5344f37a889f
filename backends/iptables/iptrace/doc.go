// Package iptrace is a packet tracer over portico's iptables rules: it follows the first
// packet of a new connection through the tables a restoretest.Ruleset holds (one Ruleset
// per family: iptables or ip6tables), with the ipsets an ipsettest.Sets holds, the way the
// kernel would, without a kernel and without root. Unit tests use it to run the shared
// packet-flow table (backendtest.RunFlows) against the rules the iptables backend
// rendered; it implements backendtest.Tracer.
//
// What it models:
//
//   - The netfilter hooks of node-a, each running the built-in chains of the tables in
//     the kernel's priority order (raw, mangle, nat for destination NAT, filter, nat for
//     source NAT). A packet arriving on an interface traverses PREROUTING; when its
//     destination (after DNAT) is an address of node-a (backendtest.Host.IsLocal) it
//     traverses INPUT, else FORWARD and POSTROUTING. A packet node-a sends traverses
//     OUTPUT and POSTROUTING and, when its destination is still an address of node-a,
//     comes back in on "lo" through the raw, mangle and filter chains of PREROUTING and
//     INPUT (nat chains see only the first pass, as conntrack's NAT does). This is the
//     same path backends/nftables/nfttrace follows.
//   - A built-in chain's policy at its end; user chains; -j (jump, the chain returns to
//     the next rule), -g (goto: a RETURN or the end of the chain returns to the caller of
//     the chain that held the -g), RETURN, ACCEPT, DROP, REJECT, DNAT, MARK and
//     MASQUERADE. DNAT and MASQUERADE end the nat chains of their hook, like ACCEPT; DNAT
//     rewrites the destination every later hook, the routing decision and every later set
//     lookup see.
//   - The matches the backend writes, as iptables-save prints them (see parseRule):
//     addresses with prefix lengths or non-contiguous masks, interfaces with the "+"
//     wildcard, protocols and destination ports, comments, conntrack state, address type
//     LOCAL, ipsets (through ipsettest.Sets.Match), marks, statistic random and recent.
//   - Random choices: every `-m statistic --mode random` rule is followed both ways, each
//     as a path of its own with its probability. The Result gathers every path's endpoint
//     and requires every path to end in the same verdict; the endpoints of each DNAT chain
//     must be reached with equal probability (within 1e-6), which catches a wrong
//     --probability.
//   - Session affinity, for a first packet: `-m recent --rcheck`/`--update` match only
//     what a `--set` earlier on the same path recorded, `--set` always matches. A result
//     is Sticky when every DNAT path went through a `--set --name X` whose chain holds,
//     before that rule, an `--update` or `--rcheck` of the same name, address side and
//     mask that DNATs to the same endpoint: the next connection of the client sticks.
//
// What it does not model: conntrack beyond the first packet, routing beyond "is this an
// address of node-a", output interfaces (-o is an error), source ports, and any rule
// outside the two fakes. Any option, match, target or chain it does not know makes Trace
// return an error naming the table, chain, rule number and rule: nothing is silently
// ignored. Loops are caught by a limit of 64 nested chains.
package iptrace
