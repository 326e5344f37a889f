package variant

import (
	"errors"
	"fmt"
	"os/exec"
)

// DebianPackage is the Debian package that ships both variants of every iptables and
// ip6tables command.
const DebianPackage = "iptables"

// Tools checks that the programs of variant v for families are installed. lookPath finds
// a program (nil: exec.LookPath). The error of a missing program names it and the Debian
// package, and backends.IsNotInstalled holds for it.
func Tools(v Variant, lookPath func(string) (string, error), families ...Family) error {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	for _, f := range families {
		for _, name := range v.Commands(f).All() {
			if _, err := lookPath(name); err != nil {
				return missing(v, name, err)
			}
		}
	}
	return nil
}

// missing makes the error of a program that lookPath did not find; it always wraps
// exec.ErrNotFound, which backends.IsNotInstalled recognises.
func missing(v Variant, name string, err error) error {
	const msg = "the iptables backend (iptables-%s) needs the %s binary (Debian: apt-get install %s), which is not installed: %w"
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf(msg, v, name, DebianPackage, err)
	}
	return fmt.Errorf(msg+" (%w)", v, name, DebianPackage, exec.ErrNotFound, err)
}
