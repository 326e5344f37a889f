package traffic

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// On kernels without SCTP sockets (CONFIG_IP_SCTP unset) conntrack and NAT may still
// handle SCTP (CONFIG_NF_CT_PROTO_SCTP): a raw IP socket can send the first packet of an
// association, an INIT chunk, and the node's conntrack table then shows where it was
// DNATed to. That is all this file does; there is no SCTP endpoint to answer it.

// castagnoli is the CRC32c table SCTP checksums use (RFC 9260, appendix A).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPInit returns an SCTP packet (common header and one INIT chunk) from srcPort to
// dstPort with the given initiate tag (non-zero) and a correct CRC32c checksum. Its
// verification tag is 0, as RFC 9260 requires of a packet carrying INIT.
func SCTPInit(srcPort, dstPort uint16, initTag uint32) []byte {
	const initLen = 20 // chunk header 4, tag 4, a_rwnd 4, streams 2+2, initial TSN 4
	pkt := make([]byte, 12+initLen)
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dstPort)
	// pkt[4:8] verification tag 0; pkt[8:12] checksum, zero while it is computed.
	c := pkt[12:]
	c[0] = 1 // chunk type INIT
	c[1] = 0 // flags
	binary.BigEndian.PutUint16(c[2:], initLen)
	binary.BigEndian.PutUint32(c[4:], initTag)
	binary.BigEndian.PutUint32(c[8:], 65536) // advertised receiver window credit
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // maximum inbound streams
	binary.BigEndian.PutUint32(c[16:], initTag^0x5a5a5a5a)
	// The CRC32c is stored in the byte order the reflected algorithm produces it, which is
	// little-endian (as the kernel's sctp_compute_cksum does with cpu_to_le32).
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return pkt
}

// SendSCTPInit sends SCTPInit(srcPort, dst.Port(), initTag) to dst from a raw IPPROTO_SCTP
// socket created inside namespace fromNS; the kernel writes the IP header, with src as
// source address when it is valid (else the routing's choice).
func SendSCTPInit(topo *netns.Topology, fromNS string, src netip.Addr, srcPort uint16,
	dst netip.AddrPort, initTag uint32) error {
	domain := unix.AF_INET
	if !dst.Addr().Unmap().Is4() {
		domain = unix.AF_INET6
	}
	fd := -1
	err := topo.Do(fromNS, func() error {
		var err error
		fd, err = unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		return err
	})
	if err != nil {
		return fmt.Errorf("traffic: raw SCTP socket in %s: %w", topo.Name(fromNS), err)
	}
	defer unix.Close(fd)
	if src.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			return fmt.Errorf("traffic: bind raw SCTP socket to %s: %w", src, err)
		}
	}
	pkt := SCTPInit(srcPort, dst.Port(), initTag)
	// A raw socket's address carries no port (sin_port is the protocol for IPv4 raw
	// sockets and must be 0 or it); the ports are in the SCTP header.
	if err := unix.Sendto(fd, pkt, 0, sockaddr(netip.AddrPortFrom(dst.Addr(), 0))); err != nil {
		return fmt.Errorf("traffic: send SCTP INIT to %s from %s: %w", dst, topo.Name(fromNS), err)
	}
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}
