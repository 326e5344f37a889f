package variant

import "strconv"

// LockFile is where iptables-legacy takes the xtables lock.
//
// The lock matters to iptables-legacy only. Its kernel interface has no transactions: a
// writer reads a whole table, changes it and writes the whole table back, so two writers
// at once (portico, kubelet, a CNI plugin, firewalld, docker) would lose each other's
// changes. Every legacy command therefore takes an flock on /run/xtables.lock (the
// XTABLES_LOCKFILE variable moves it) for the duration; without -w a command that finds it
// held fails at once ("Another app is currently holding the xtables lock", exit status 4),
// with -w it waits up to the given seconds. The lock only works between processes that
// see the same file: a containerised portico must get the host's /run/xtables.lock
// (a hostPath mount, as kube-proxy's DaemonSet has), or it races the host's writers.
//
// iptables-nft ignores the lock (it accepts -w and does nothing with it): nf_tables
// commits each batch atomically in the kernel and retries when another writer changed
// the ruleset in between. Portico passes -w to both variants all the same.
const LockFile = "/run/xtables.lock"

// DefaultLockSeconds is how long a command waits for the xtables lock, as kube-proxy does.
const DefaultLockSeconds = 5

// LockArgs returns the options that make a plain iptables command wait up to seconds
// for the xtables lock: "-w <seconds>".
func LockArgs(seconds int) []string {
	return []string{"-w", strconv.Itoa(seconds)}
}

// RestoreArgs returns the options of every iptables-restore call: wait up to seconds for
// the xtables lock, and --noflush, so that only the chains the input declares are flushed
// and every other chain of the table (the host's, kubelet's) is left alone.
func RestoreArgs(seconds int) []string {
	return append(LockArgs(seconds), "--noflush")
}

// IptablesArgs returns args preceded by the lock options, for a plain iptables command.
func IptablesArgs(seconds int, args ...string) []string {
	return append(LockArgs(seconds), args...)
}
