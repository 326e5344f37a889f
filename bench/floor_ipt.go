package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The floor in iptables mode: the proxy's own chains, their rules and the jumps to them,
// as iptables-save prints them in node-a (one file per family), and its ipsets as ipset
// save prints them, loaded into a fresh empty namespace by `ipset restore` and the
// variant's iptables-restore and ip6tables-restore (without --noflush), one after the
// other, timed together.

// iptDump is a proxy's dumped iptables rules and ipsets.
type iptDump struct {
	sets, v4, v6 string // file paths
	bytes        int64
	lines        int
}

// dumpIPT writes p's rules and sets in node-a to files next to base.
func dumpIPT(ctx context.Context, topo *netns.Topology, p Proxy, base string) (*iptDump, error) {
	prefix := p.ChainPrefix()
	d := &iptDump{sets: base + ".ipset", v4: base + ".v4", v6: base + ".v6"}
	cmds := iptCommands(p.Mode().Variant)
	for i, path := range []string{d.v4, d.v6} {
		out, err := outIn(ctx, topo, netns.NodeA, cmds[i]+"-save")
		if err != nil {
			return nil, fmt.Errorf("dumping %s's rules: %w", p.Name(), err)
		}
		if err := d.write(path, ownIPTLines(out, prefix)); err != nil {
			return nil, err
		}
	}
	out, err := outIn(ctx, topo, netns.NodeA, "ipset", "save")
	if err != nil {
		return nil, fmt.Errorf("dumping %s's ipsets: %w", p.Name(), err)
	}
	return d, d.write(d.sets, ownSetLines(out, prefix))
}

func (d *iptDump) write(path, s string) error {
	d.bytes += int64(len(s))
	d.lines += strings.Count(s, "\n")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("writing the dump: %w", err)
	}
	return nil
}

// remove deletes the dump's files (or moves them into dir when set).
func (d *iptDump) remove(dir string) {
	for _, p := range []string{d.sets, d.v4, d.v6} {
		if dir != "" {
			_ = os.Rename(p, filepath.Join(dir, filepath.Base(p)))
		}
		_ = os.Remove(p)
	}
}

// ownIPTLines keeps, per table of iptables-save output, the chains named with prefix,
// their rules and the rules of other chains that jump to them; a table with none of
// them is left out.
func ownIPTLines(save, prefix string) string {
	var out, table strings.Builder
	own := false
	for line := range strings.Lines(save) {
		switch {
		case strings.HasPrefix(line, "*"):
			table.Reset()
			table.WriteString(line)
			own = false
		case strings.HasPrefix(line, "COMMIT"):
			if own {
				out.WriteString(table.String())
				out.WriteString(line)
			}
		case strings.HasPrefix(line, ":"+prefix), strings.HasPrefix(line, "-A "+prefix),
			strings.HasPrefix(line, "-A ") && (strings.Contains(line, " -j "+prefix) || strings.Contains(line, " -g "+prefix)):
			table.WriteString(nfacctRe.ReplaceAllString(line, ""))
			own = true
		}
	}
	return out.String()
}

// nfacctRe matches kube-proxy's nfacct match (a packet counter, `-m nfacct --nfacct-name
// NAME`): its accounting object exists in node-a, where kube-proxy created it through
// netlink, not in the floor's fresh namespace, so the floor loads the rule without it.
var nfacctRe = regexp.MustCompile(`-m nfacct --nfacct-name\s+\S+ `)

// ownSetLines keeps the lines of ipset save output about sets named with prefix.
func ownSetLines(save, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(save) {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], prefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// floorStep is one tool run of a floor load: the wrapper link to run, its arguments and
// the file fed to its stdin.
type floorStep struct {
	bin   string
	args  []string
	input string
}

// iptFloorSteps are the runs that load a dump with variant v's tools, through the
// wrapper links in wrapDir.
func iptFloorSteps(d *iptDump, wrapDir, v string) []floorStep {
	var steps []floorStep
	if st, err := os.Stat(d.sets); err == nil && st.Size() > 0 {
		steps = append(steps, floorStep{bin: filepath.Join(wrapDir, "ipset"), args: []string{"restore"}, input: d.sets})
	}
	for i, path := range []string{d.v4, d.v6} {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			steps = append(steps, floorStep{bin: filepath.Join(wrapDir, iptCommands(v)[i]+"-restore"), args: []string{"-w", "5"}, input: path})
		}
	}
	return steps
}

// loadSteps creates a fresh namespace, runs steps one after the other in it, calls after
// (when not nil) on the loaded namespace, and deletes it; it returns the time from the
// first start to the last exit and the runs the wrapper logged (to logPath) for steps.
func loadSteps(ctx context.Context, topo *netns.Topology, steps []floorStep, logPath string, after func(vnetns.NsHandle)) (time.Duration, NFTRuns, error) {
	h, done, err := floorNamespace(ctx, topo)
	if err != nil {
		return 0, NFTRuns{}, err
	}
	defer done()
	off := fileSize(logPath)
	start := time.Now()
	for _, s := range steps {
		if err := runStep(ctx, h, s, logPath); err != nil {
			return time.Since(start), NFTRuns{}, err
		}
	}
	took, runs := time.Since(start), readWrapLog(logPath, off)
	if after != nil {
		after(h)
	}
	return took, runs, nil
}

// runStep runs one floor step in namespace h and waits for it.
func runStep(ctx context.Context, h vnetns.NsHandle, s floorStep, logPath string) error {
	in, err := os.Open(s.input)
	if err != nil {
		return err
	}
	defer in.Close()
	cmd := exec.CommandContext(ctx, s.bin, s.args...)
	cmd.Env = append(os.Environ(), "NFTWRAP_LOG="+logPath)
	cmd.Stdin = in
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The child inherits the namespace of the thread that forks it.
	if err := netns.DoIn(h, func() error { return cmd.Start() }); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(s.bin), strings.Join(s.args, " "), err, lastLines(stderr.String(), 5))
	}
	return nil
}
