package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// dirPrefix starts the name of every cluster directory.
const dirPrefix = "portico-e2e-cluster-"

// ownerFile, inside a cluster directory, names the process that created it.
const ownerFile = "owner"

// staleGrace protects a directory whose owner record is not written yet.
const staleGrace = time.Minute

// writeOwner records the current process as the owner of a cluster directory.
func writeOwner(dir string) error { return writeOwnerPID(dir, os.Getpid()) }

// HandOver makes process pid the owner of the cluster's directory, so that it is not
// removed as stale while that process runs.
func (c *Cluster) HandOver(pid int) error { return writeOwnerPID(c.Dir(), pid) }

func writeOwnerPID(dir string, pid int) error {
	rec, err := netns.OwnerRecordOf(pid)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(rec+"\n"), 0o644); err != nil {
		return fmt.Errorf("cluster: owner record: %w", err)
	}
	return nil
}

// CleanupStale removes cluster directories under parent (default os.TempDir()) left by
// runs that died without Stop: those whose owner process is gone. Their processes died
// with the run (they get SIGKILL when the test process dies). It returns the removed
// directories.
func CleanupStale(parent string) ([]string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	dirs, err := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var removed []string
	var errs []error
	for _, d := range dirs {
		if !stale(d) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("cluster: remove %s: %w", d, err))
			continue
		}
		removed = append(removed, d)
	}
	return removed, errors.Join(errs...)
}

// stale reports whether a cluster directory's owner is gone. A directory without a
// record is stale once older than staleGrace.
func stale(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err == nil {
		return !netns.OwnerAlive(string(b))
	}
	st, serr := os.Stat(dir)
	return serr == nil && time.Since(st.ModTime()) > staleGrace
}
