package ipvs

import (
	"net"
	"net/netip"
	"syscall"

	"github.com/moby/ipvs"

	"github.com/portico-dev/portico/model"
)

// ipvsProto returns the IP protocol number IPVS uses for p.
func ipvsProto(p model.Protocol) uint16 {
	switch p {
	case model.UDP:
		return syscall.IPPROTO_UDP
	case model.SCTP:
		return syscall.IPPROTO_SCTP
	}
	return syscall.IPPROTO_TCP
}

// modelProto is ipvsProto's inverse; ok is false for a protocol portico never uses.
func modelProto(p uint16) (model.Protocol, bool) {
	switch p {
	case syscall.IPPROTO_TCP:
		return model.TCP, true
	case syscall.IPPROTO_UDP:
		return model.UDP, true
	case syscall.IPPROTO_SCTP:
		return model.SCTP, true
	}
	return 0, false
}

// family returns the address family of a.
func family(a netip.Addr) uint16 {
	if a.Is4() {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

// service returns the kernel's form of a virtual server (the key only when vs has no
// scheduler: for lookups and deletions).
func service(k vsKey, vs *virtualServer) *ipvs.Service {
	s := &ipvs.Service{
		Address:       net.IP(k.addr.AsSlice()),
		Protocol:      ipvsProto(k.proto),
		Port:          k.port,
		AddressFamily: family(k.addr),
		Netmask:       0xffffffff,
	}
	if k.addr.Is6() {
		s.Netmask = 128
	}
	if vs != nil {
		s.SchedName = vs.scheduler
		if vs.timeout > 0 {
			s.Flags, s.Timeout = flagPersistent, vs.timeout
		}
	}
	return s
}

// keyOf returns the key of a virtual server the kernel listed; ok is false for one portico
// never writes (a firewall-mark service, another protocol).
func keyOf(s *ipvs.Service) (vsKey, bool) {
	a, ok := netip.AddrFromSlice(s.Address)
	p, known := modelProto(s.Protocol)
	if !ok || !known || s.FWMark != 0 {
		return vsKey{}, false
	}
	if s.AddressFamily == syscall.AF_INET {
		a = a.Unmap()
	}
	return vsKey{a, p, s.Port}, true
}

// sameSettings reports whether the kernel's virtual server has vs's scheduler and
// persistence.
func sameSettings(s *ipvs.Service, vs *virtualServer) bool {
	want := service(vs.key, vs)
	return s.SchedName == want.SchedName && s.Flags&^flagHashed == want.Flags && (want.Flags == 0 || s.Timeout == want.Timeout)
}

// destination returns the kernel's form of a real server with weight w (masquerading
// forwarding: the real server may be anywhere).
func destination(ap netip.AddrPort, w int) *ipvs.Destination {
	return &ipvs.Destination{
		Address:         net.IP(ap.Addr().AsSlice()),
		Port:            ap.Port(),
		Weight:          w,
		ConnectionFlags: ipvs.ConnectionFlagMasq,
		AddressFamily:   family(ap.Addr()),
	}
}

// destAddr returns the address and port of a listed real server.
func destAddr(d *ipvs.Destination) netip.AddrPort {
	a, _ := netip.AddrFromSlice(d.Address)
	if d.AddressFamily == syscall.AF_INET {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, d.Port)
}
