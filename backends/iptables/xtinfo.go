package iptables

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

// soGetInfo is IPT_SO_GET_INFO and IP6T_SO_GET_INFO: the header of an x_tables table.
const soGetInfo = 64

// xtEntries returns the number of entries (rules, and a head and an end per user chain)
// of an iptables-legacy table in family f, from the table's header alone (getsockopt
// IPT_SO_GET_INFO), without reading its rules: constant cost, where every iptables-legacy
// command copies the whole table out of the kernel. It needs CAP_NET_RAW and must only be
// asked for tables that exist (the kernel would create an empty one).
func xtEntries(f model.Family, table string) (uint32, error) {
	domain, level := unix.AF_INET, unix.IPPROTO_IP
	if f == model.IPv6 {
		domain, level = unix.AF_INET6, unix.IPPROTO_IPV6
	}
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return 0, fmt.Errorf("raw socket for the %s table header: %w", table, err)
	}
	defer unix.Close(fd)
	// struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
	var info [84]byte
	copy(info[:31], table)
	size := uint32(len(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soGetInfo,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("reading the header of the %s %s table: %w", f, table, errno)
	}
	return binary.NativeEndian.Uint32(info[76:80]), nil
}
