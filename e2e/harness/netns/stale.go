package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// StateDir holds one record per live run: <prefix>.pid with the creating process's PID
// and start time, so that CleanupStale can tell runs that died from runs in progress.
const StateDir = "/run/portico-e2e"

// writePIDFile records the current process as the owner of prefix.
func writePIDFile(prefix string) (string, error) { return writeOwnerFile(prefix, os.Getpid()) }

// HandOver makes process pid the owner of the topology's namespaces, so that they are
// not removed as stale while it runs (an environment kept after its creator exits).
func (t *Topology) HandOver(pid int) error {
	_, err := writeOwnerFile(t.spec.Prefix, pid)
	return err
}

func writeOwnerFile(prefix string, pid int) (string, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return "", fmt.Errorf("netns: state dir: %w", err)
	}
	rec, err := OwnerRecordOf(pid)
	if err != nil {
		return "", err
	}
	path := filepath.Join(StateDir, prefix+".pid")
	if err := os.WriteFile(path, []byte(rec+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("netns: pid file: %w", err)
	}
	return path, nil
}

// OwnerRecord returns "<pid> <start time>" for the current process: with the start time
// (in clock ticks since boot) the record survives PID reuse.
func OwnerRecord() (string, error) { return OwnerRecordOf(os.Getpid()) }

// OwnerRecordOf returns the owner record of process pid.
func OwnerRecordOf(pid int) (string, error) {
	start, err := processStart(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", pid, start), nil
}

// processStart returns a process's start time in clock ticks since boot (field 22 of
// /proc/PID/stat), which together with the PID identifies the process.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("netns: process %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return "", fmt.Errorf("netns: malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	const startField = 22 - 3 // fields after ")" start at field 3
	if len(fields) <= startField {
		return "", fmt.Errorf("netns: short /proc/%d/stat", pid)
	}
	return fields[startField], nil
}

// OwnerAlive reports whether the process an OwnerRecord names still runs. A malformed
// record counts as dead.
func OwnerAlive(record string) bool {
	f := strings.Fields(record)
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return false
	}
	start, err := processStart(pid)
	return err == nil && start == f[1]
}

// ownerAlive reports whether the run that recorded prefix still runs. A missing or
// unreadable record counts as dead: runs write it before creating any namespace.
func ownerAlive(prefix string) bool {
	b, err := os.ReadFile(filepath.Join(StateDir, prefix+".pid"))
	return err == nil && OwnerAlive(string(b))
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

// Leftovers lists the names of namespaces under RunDir that start with prefix, sorted.
func Leftovers(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list %s: %w", RunDir, err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// IsHarnessName reports whether a namespace name follows the harness naming pattern
// ("pc" + six hex digits + "-" + short name) and returns its run prefix.
func IsHarnessName(name string) (prefix string, ok bool) {
	m := namePattern.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// CleanupStale deletes namespaces left by earlier, interrupted runs: those that follow
// the harness naming pattern and whose creating process is gone. It also removes those
// runs' PID records, and returns the names it deleted.
func CleanupStale() ([]string, error) {
	names, err := Leftovers("pc")
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range names {
		prefix, ok := IsHarnessName(n)
		if !ok || ownerAlive(prefix) {
			continue
		}
		if err := deleteNamed(n); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	errs = append(errs, removeDeadRecords())
	return removed, errors.Join(errs...)
}

// removeDeadRecords removes PID records whose run is gone (runs that died before
// creating a namespace, or after deleting them all).
func removeDeadRecords() error {
	records, err := filepath.Glob(filepath.Join(StateDir, "pc*.pid"))
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	var errs []error
	for _, r := range records {
		prefix := strings.TrimSuffix(filepath.Base(r), ".pid")
		if prefixPattern.MatchString(prefix) && !ownerAlive(prefix) {
			errs = append(errs, removeFile(r))
		}
	}
	return errors.Join(errs...)
}

// DeleteRun deletes every namespace of the run prefix and its PID record, whoever owns
// it (used to remove an environment kept after its creator exited).
func DeleteRun(prefix string) ([]string, error) {
	if !prefixPattern.MatchString(prefix) {
		return nil, fmt.Errorf("netns: %q is not a run prefix", prefix)
	}
	names, err := Leftovers(prefix + "-")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, deleteNamed(n))
	}
	errs = append(errs, removeFile(filepath.Join(StateDir, prefix+".pid")))
	return names, errors.Join(errs...)
}
