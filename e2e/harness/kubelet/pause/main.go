// Command pause is the sandbox container of the e2e harness's real node: the container
// runtime starts it first in every pod, to hold the pod's namespaces, and stops it last.
// The harness has no registry to pull registry.k8s.io/pause from, so it builds this one
// (static, a few MiB) and imports it into containerd under that name.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-child:
			reap()
		}
	}
}

// reap collects every child that has ended (as PID 1 of a pod sharing its PID namespace,
// the pod's orphans are its children), so that none stays a zombie.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
