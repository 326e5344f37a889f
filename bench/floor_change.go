package bench

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// The change floor in iptables mode: what the variant's tools and the kernel take for the
// smallest change a proxy can make over its own rules, one chain of the nat table
// redeclared (so flushed) and its rules written again by `iptables-restore --noflush`,
// onto the proxy's dumped rules and sets in the namespace of the floor's first load.
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

// changeFloor is the change floor of one dump: the chain picked, the restore run that
// rewrites it, and what its runs measured.
type changeFloor struct {
	chain changeChain
	step  floorStep
	runs  []float64 // ms
	err   error
	done  bool
}

// newChangeFloor prepares the change floor of dump d: the IPv4 dump's chain picked by
// pickChangeChain, rewritten with variant v's iptables-restore through the wrapper links
// in wrapDir (its input is written next to the dump; remove deletes it).
func newChangeFloor(d *iptDump, wrapDir, v string) (*changeFloor, error) {
	save, err := os.ReadFile(d.v4)
	if err != nil {
		return nil, err
	}
	c, ok := pickChangeChain(string(save))
	if !ok {
		return nil, fmt.Errorf("no nat chain with a --probability rule in the IPv4 dump")
	}
	path := d.v4 + ".change"
	if err := os.WriteFile(path, []byte(c.input), 0o644); err != nil {
		return nil, err
	}
	step := floorStep{bin: filepath.Join(wrapDir, iptCommands(v)[0]+"-restore"), args: []string{"-w", "5", "--noflush"}, input: path}
	return &changeFloor{chain: c, step: step}, nil
}

// measureIn times changeFloorRuns rewrites of the chain in namespace h, which holds the
// loaded dump (each run through the wrapper, as the proxy's are); only the first call
// measures.
func (c *changeFloor) measureIn(ctx context.Context, h vnetns.NsHandle, logPath string) {
	if c == nil || c.done {
		return
	}
	c.done = true
	for range changeFloorRuns {
		start := time.Now()
		if err := runStep(ctx, h, c.step, logPath); err != nil {
			c.err = fmt.Errorf("rewriting %s: %w", c.chain.name, err)
			return
		}
		c.runs = append(c.runs, float64(time.Since(start).Microseconds())/1000)
	}
}

// record writes the change floor, or why there is none, into f.
func (c *changeFloor) record(f *Floor, prepErr error) {
	switch {
	case prepErr != nil:
		f.ChangeError = prepErr.Error()
		return
	case !c.done:
		return // the floor's load failed first
	}
	f.ChangeChain, f.ChangeRules, f.ChangeRunsMs = c.chain.name, c.chain.rules, c.runs
	if c.err != nil {
		f.ChangeError = c.err.Error()
		return
	}
	f.ChangeMedianMs = percentile(c.runs, 0.5)
}

// remove deletes the change floor's input.
func (c *changeFloor) remove() {
	if c != nil {
		_ = os.Remove(c.step.input)
	}
}
