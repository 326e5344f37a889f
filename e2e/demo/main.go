// Command demo is `make demo`: it builds a small cluster on this machine (a real etcd and
// kube-apiserver, two nodes, four pods and a client, all in network namespaces), runs
// portico on node-a from the example kube-proxy ConfigMap, applies the example Services,
// shows each one answering, prints `portico dump` and tears everything down (or keeps it
// running with -keep). Run it as root from the repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "nftables", "portico's proxy mode (the ConfigMap's mode field)")
	flag.BoolVar(&o.keep, "keep", false, "keep the cluster and portico running after the demo")
	flag.StringVar(&o.deploy, "deploy", "process", "how portico runs on node-a: process, or daemonset (the DaemonSet of deploy/ run by a real kubelet from portico's image)")
	flag.BoolVar(&o.down, "down", false, "tear down a demo kept with -keep, and exit")
	flag.StringVar(&o.examples, "examples", "examples", "directory of the example manifests")
	flag.StringVar(&o.serveAddrs, "addrs", "", "with -serve: comma-separated addresses to listen on")
	flag.StringVar(&o.servePorts, "ports", "", "with -serve: comma-separated PORT/PROTO to listen on")
	flag.BoolVar(&o.serve, "serve", false, "run a pod's traffic server in the current namespace (used with KEEP=1)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case o.serve:
		err = serve(ctx, o.serveAddrs, o.servePorts)
	case o.down:
		err = down()
	default:
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

type options struct {
	mode, examples, deploy string
	keep, down, serve      bool
	serveAddrs, servePorts string
}

// step prints a numbered section title.
func step(n, total int, format string, args ...any) {
	fmt.Printf("\n\033[1m[%d/%d] %s\033[0m\n", n, total, fmt.Sprintf(format, args...))
}

func info(format string, args ...any) { fmt.Printf("      "+format+"\n", args...) }

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }
