package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// stateFile records a kept demo so that `make demo-down` can remove it.
const stateFile = ".cache/demo/state.json"

type state struct {
	Prefix string `json:"prefix"`
	PIDs   []int  `json:"pids"`
	Dir    string `json:"dir"`
}

// saveState records the kept demo and hands its namespaces to portico's process, so that
// test runs do not remove them as stale while it runs.
func saveState(e *env.Env) error {
	st := state{Prefix: e.Topo.Prefix(), PIDs: append([]int{e.Portico.PID()}, e.Cluster.PIDs()...), Dir: e.Dir}
	for _, p := range e.ServerProcs {
		st.PIDs = append(st.PIDs, p.PID())
	}
	if err := e.Topo.HandOver(e.Portico.PID()); err != nil {
		return err
	}
	if err := e.Cluster.HandOver(e.Portico.PID()); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.MkdirAll(filepath.Dir(stateFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(stateFile, b, 0o644)
}

// down stops the processes of a kept demo (by PID), deletes its namespaces and files.
func down() error {
	b, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("no kept demo to tear down")
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", stateFile, err)
	}
	for _, pid := range st.PIDs {
		stopPID(pid)
	}
	_, err = netns.DeleteRun(st.Prefix)
	errs := []error{err, os.RemoveAll(st.Dir), os.Remove(stateFile)}
	fmt.Printf("stopped the demo %s (processes %v) and removed its namespaces\n", st.Prefix, st.PIDs)
	return errors.Join(errs...)
}

// stopPID sends SIGTERM, then SIGKILL after a few seconds.
func stopPID(pid int) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	for range 50 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
