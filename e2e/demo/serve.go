package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// serve runs a pod's traffic server in the current network namespace until ctx ends.
func serve(ctx context.Context, addrList, portList string) error {
	var addrs []netip.Addr
	for _, a := range strings.Split(addrList, ",") {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("-addrs: %w", err)
		}
		addrs = append(addrs, ip)
	}
	var ports []traffic.PortSpec
	for _, p := range strings.Split(portList, ",") {
		num, proto, ok := strings.Cut(p, "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil {
			return fmt.Errorf("-ports: %q is not PORT/PROTO", p)
		}
		ports = append(ports, traffic.PortSpec{Port: uint16(n), Protocol: strings.ToUpper(proto)})
	}
	s, err := traffic.ServeHere(addrs, ports)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}
