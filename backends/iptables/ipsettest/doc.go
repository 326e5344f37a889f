// Package ipsettest is a unit-test fake of `ipset -exist restore`: it parses the input the
// iptables backend writes and keeps the sets in memory, so that tests can check what the
// sets hold (Save, Names, Entries) and a packet tracer can evaluate `-m set --match-set`
// (Match) without a kernel.
//
// It knows the set types the backend uses, hash:ip, hash:ip,port, hash:ip,port,ip and
// hash:ip,port,net, of family inet or inet6, and the commands create, add, del, flush,
// destroy and swap. Its semantics follow ipset v7.17 with -exist, checked against the real
// tool in a network namespace by the differential kernel test (build tag e2e):
//
//   - Lines are applied one by one and the first failing line ends the restore; the
//     error (a *RestoreError) names its 1-based number and text, like ipset's "Error in
//     line N: ...". The lines before it stay applied, as with the real tool, except one
//     thing the real tool does: it sends a run of add (or del) lines to the same set as
//     one batch when a line of another command or set comes, so a line that fails to
//     parse (syntax, family, missing set of an add) loses the run just before it, while a
//     line the kernel refuses (full set, create of a different set, bad swap) does not.
//     (ipset also sends a run when its netlink buffer fills up, after some hundreds of
//     lines; the fake does not model that.) An unknown command fails with the line's
//     number too, though ipset then prints none.
//   - create of an existing set succeeds when the type, maxelem and timeout are the same
//     (the existing set is kept as it is; ipset ignores a different family or hashsize
//     there), and fails otherwise. add of a present entry and del of an absent one succeed.
//   - add to a set holding maxelem entries fails ("Hash is full").
//   - swap needs two existing sets of the same type and family.
//   - Entries are normalised as ipset save prints them: lower-case protocols, IPv6
//     addresses in canonical form, a net masked ("10.1.2.3/24" is 10.1.2.0/24) and a
//     full-length net printed as a plain address; a port without protocol is tcp.
//
// Where the real tool accepts more, the fake is stricter and fails the line (ErrUnsupported):
// CIDRs and ranges in ip components (ipset expands them into many entries), port ranges
// and service names, per-entry timeouts, and create options other than family, hashsize,
// maxelem and timeout. Save prints the sets sorted by name and their entries sorted (ipset
// save prints them in creation and hash order).
package ipsettest
