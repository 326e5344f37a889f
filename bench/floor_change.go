package bench

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The change floor in iptables mode: what the variant's tools and the kernel take for the
// smallest change a proxy can make over its own rules, one chain of the nat table
// redeclared (so flushed) and its rules written again by `iptables-restore --noflush`,
// onto a fresh namespace holding the proxy's dumped rules and sets (the floor's load).
// Both variants pay for the whole table on every commit (iptables-nft: the kernel
// validates every chain reachable from the base chains, once per base chain;
// iptables-legacy: the tool copies the table out of the kernel and writes all of it
// back), so a proxy's change can be no faster than this.

// changeFloorRuns is how many times the chain is rewritten; the median counts.
const changeFloorRuns = 5

// changeChain is the restore input that rewrites one chain of a dump's nat table.
type changeChain struct {
	name  string
	rules int
	input string
}

// pickChangeChain returns the input rewriting the first chain of save's nat table (in
// dump order, iptables-save form) with a rule that picks an endpoint at random
// (`--probability`): portico's PORTICO-C-*, kube-proxy's KUBE-SVC-*; ok is false when
// there is none.
func pickChangeChain(save string) (c changeChain, ok bool) {
	var rules []string
	for line := range natRules(save) {
		if c.name == "" && strings.Contains(line, "--probability") {
			c.name = strings.Fields(line)[1]
		}
	}
	if c.name == "" {
		return c, false
	}
	for line := range natRules(save) {
		if strings.Fields(line)[1] == c.name {
			rules = append(rules, line)
		}
	}
	c.rules = len(rules)
	c.input = "*nat\n:" + c.name + " - [0:0]\n" + strings.Join(rules, "") + "COMMIT\n"
	return c, true
}

// natRules yields the rules ("-A chain ..." lines, with their newline) of save's nat table.
func natRules(save string) iter.Seq[string] {
	return func(yield func(string) bool) {
		nat := false
		for line := range strings.Lines(save) {
			if strings.HasPrefix(line, "*") {
				nat = strings.TrimSpace(line) == "*nat"
			} else if nat && strings.HasPrefix(line, "-A ") && !yield(line) {
				return
			}
		}
	}
}

// measureChangeFloor loads steps into a fresh namespace, then times changeFloorRuns runs
// of change (each through the wrapper, as the proxy's runs are) and returns them in ms.
func measureChangeFloor(ctx context.Context, topo *netns.Topology, steps []floorStep, change floorStep, logPath string) ([]float64, error) {
	h, done, err := floorNamespace(ctx, topo)
	if err != nil {
		return nil, err
	}
	defer done()
	for _, s := range steps {
		if err := runStep(ctx, h, s, logPath); err != nil {
			return nil, err
		}
	}
	var ms []float64
	for range changeFloorRuns {
		start := time.Now()
		if err := runStep(ctx, h, change, logPath); err != nil {
			return ms, err
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	return ms, nil
}

// changeFloor measures the change floor of a dump into f (f.ChangeError on failure):
// the IPv4 dump's chain picked by pickChangeChain, rewritten with variant v's
// iptables-restore through the wrapper links in wrapDir.
func changeFloor(ctx context.Context, topo *netns.Topology, d *iptDump, steps []floorStep, wrapDir, v, logPath string, f *Floor) {
	save, err := os.ReadFile(d.v4)
	if err != nil {
		f.ChangeError = err.Error()
		return
	}
	c, ok := pickChangeChain(string(save))
	if !ok {
		f.ChangeError = "no nat chain with a --probability rule in the IPv4 dump"
		return
	}
	path := d.v4 + ".change"
	if err := os.WriteFile(path, []byte(c.input), 0o644); err != nil {
		f.ChangeError = err.Error()
		return
	}
	defer os.Remove(path)
	change := floorStep{bin: filepath.Join(wrapDir, iptCommands(v)[0]+"-restore"), args: []string{"-w", "5", "--noflush"}, input: path}
	f.ChangeChain, f.ChangeRules = c.name, c.rules
	f.ChangeRunsMs, err = measureChangeFloor(ctx, topo, steps, change, logPath)
	if err != nil {
		f.ChangeError = fmt.Sprintf("rewriting %s: %v", c.name, err)
		return
	}
	f.ChangeMedianMs = percentile(f.ChangeRunsMs, 0.5)
}
