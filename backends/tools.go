package backends

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Tool is a program or kernel module that a proxy mode needs on the node.
type Tool struct {
	// Name is the program looked up on the PATH, or the kernel module's name.
	Name string
	// Module marks a kernel module rather than a program.
	Module bool
	// Install says how to get it on Debian.
	Install string
}

// String names the tool as a message does: "the nft binary", "the ip_vs kernel module".
func (t Tool) String() string {
	if t.Module {
		return "the " + t.Name + " kernel module"
	}
	return "the " + t.Name + " binary"
}

// modeTools lists what each of kube-proxy's Linux proxy modes needs on the node, whether
// this build has the mode's backend or not: the list of modes that would work on a node
// is advice to the operator.
var modeTools = map[string][]Tool{
	"nftables": {
		{Name: "nft", Install: "apt-get install nftables"},
	},
	"iptables": {
		{Name: "iptables-restore", Install: "apt-get install iptables"},
		{Name: "iptables-save", Install: "apt-get install iptables"},
		{Name: "ipset", Install: "apt-get install ipset"},
	},
	// portico's ipvs mode does with nftables what kube-proxy's does with ipset and
	// iptables (backends/ipvs/README.md).
	"ipvs": {
		{Name: "ip_vs", Module: true, Install: "modprobe ip_vs; the module ships with Debian's kernel"},
		{Name: "nft", Install: "apt-get install nftables"},
	},
}

// MissingToolError is the error of a proxy mode that cannot run on this node because a
// program or kernel module it needs is not installed. It does not go away by trying
// again: portico exits on it at start.
type MissingToolError struct {
	// Mode is the proxy mode.
	Mode string
	// Tool is the missing program or module.
	Tool Tool
	// Err is what looking for it returned.
	Err error
	// Working lists the other modes whose programs and modules are all present, each
	// marked when this build does not have its backend.
	Working []string
}

// Error names the mode, the tool, how to install it and the modes that would work.
func (e *MissingToolError) Error() string {
	working := "none"
	if len(e.Working) > 0 {
		working = strings.Join(e.Working, ", ")
	}
	return fmt.Sprintf("%s mode needs %s (Debian: %s), which is not installed (%v); modes that would work here: %s",
		e.Mode, e.Tool, e.Tool.Install, e.Err, working)
}

// Unwrap returns the lookup's error.
func (e *MissingToolError) Unwrap() error { return e.Err }

// IsNotInstalled reports whether err comes from a program or kernel module that the node
// lacks (a MissingToolError, or a program not found on the PATH), as opposed to a failure
// that trying again may cure.
func IsNotInstalled(err error) bool {
	var mt *MissingToolError
	return errors.As(err, &mt) || errors.Is(err, exec.ErrNotFound)
}

// ToolProbe looks for the programs and kernel modules of the proxy modes. Its zero value
// uses the PATH and the machine's /sys and /lib/modules.
type ToolProbe struct {
	// LookPath finds a program (default: exec.LookPath).
	LookPath func(file string) (string, error)
	// Root is where /sys and /lib/modules are found (default "/").
	Root string
	// KernelRelease is the running kernel's release, for /lib/modules (default: read
	// from /proc/sys/kernel/osrelease under Root).
	KernelRelease string
}

// Check returns a *MissingToolError when mode needs a program or module that the node
// does not have, listing the modes of allModes that would work (the ones not in
// available marked so). A mode with no known needs passes.
func (p ToolProbe) Check(mode string, allModes, available []string) error {
	tool, err := p.missing(mode)
	if err == nil {
		return nil
	}
	var working []string
	for _, m := range allModes {
		if _, known := modeTools[m]; !known || m == mode {
			continue
		}
		if _, err := p.missing(m); err != nil {
			continue
		}
		if slices.Contains(available, m) {
			working = append(working, m)
		} else {
			working = append(working, m+" (not in this build)")
		}
	}
	return &MissingToolError{Mode: mode, Tool: tool, Err: err, Working: working}
}

// missing returns the first tool of mode that the node lacks, and why.
func (p ToolProbe) missing(mode string) (Tool, error) {
	for _, t := range modeTools[mode] {
		if err := p.find(t); err != nil {
			return t, err
		}
	}
	return Tool{}, nil
}

// find looks for one tool.
func (p ToolProbe) find(t Tool) error {
	if t.Module {
		return p.findModule(t.Name)
	}
	lookPath := p.LookPath
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	_, err := lookPath(t.Name)
	return err
}

// errNoModule is the error of a kernel module that is neither loaded, built in nor
// installed.
var errNoModule = errors.New("neither loaded nor found in modules.builtin or modules.dep")

// findModule succeeds when the kernel module is loaded (or built in: /sys/module lists
// both) or installed for the running kernel (modprobe can load it).
func (p ToolProbe) findModule(name string) error {
	root := p.Root
	if root == "" {
		root = "/"
	}
	if _, err := os.Stat(filepath.Join(root, "sys/module", name)); err == nil {
		return nil
	}
	release := p.KernelRelease
	if release == "" {
		data, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/osrelease"))
		if err != nil {
			return fmt.Errorf("kernel module %s: reading the kernel release: %w", name, err)
		}
		release = strings.TrimSpace(string(data))
	}
	for _, list := range []string{"modules.builtin", "modules.dep"} {
		data, err := os.ReadFile(filepath.Join(root, "lib/modules", release, list))
		if err == nil && listsModule(string(data), name) {
			return nil
		}
	}
	return fmt.Errorf("kernel module %s for kernel %s: %w", name, release, errNoModule)
}

// listsModule reports whether a modules.builtin or modules.dep text lists module name
// (a line whose path, before any ':', ends in /name.ko with any compression suffix).
func listsModule(text, name string) bool {
	for line := range strings.Lines(text) {
		path, _, _ := strings.Cut(strings.TrimSpace(line), ":")
		base := filepath.Base(path)
		if base == name+".ko" || strings.HasPrefix(base, name+".ko.") {
			return true
		}
	}
	return false
}
