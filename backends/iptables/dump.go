package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// dumpFamily writes, per table, portico's chains, their rules and the jumps to them.
func dumpFamily(ctx context.Context, k kernel, x fam, w io.Writer) error {
	fmt.Fprintf(w, "# %s\n", x.f)
	for _, table := range restoreTables {
		save, err := k.Save(ctx, x.f, table)
		if err != nil {
			return fmt.Errorf("dumping %s table %s: %w", x.f, table, err)
		}
		if _, err := io.WriteString(w, ownLines(save)); err != nil {
			return err
		}
	}
	return nil
}

// ownLines keeps the lines of iptables-save output that concern portico: the table
// headers, its chains and their rules, and the rules that jump to them.
func ownLines(save string) string {
	var b strings.Builder
	for line := range strings.Lines(save) {
		switch {
		case strings.HasPrefix(line, "*"), strings.HasPrefix(line, "COMMIT"),
			strings.HasPrefix(line, ":"+chainPrefix), strings.HasPrefix(line, "-A "+chainPrefix),
			strings.HasPrefix(line, "-A ") && refersToOwn(line):
			b.WriteString(line)
		}
	}
	return b.String()
}

// refersToOwn reports whether a rule jumps to one of portico's chains.
func refersToOwn(rule string) bool {
	return strings.Contains(rule, " -j "+chainPrefix) || strings.Contains(rule, " -g "+chainPrefix)
}

// dumpSets writes portico's ipsets (ipset save).
func dumpSets(ctx context.Context, run variant.Runner, w io.Writer) error {
	out, err := run.Run(ctx, "ipset", []string{"save"}, nil)
	if err != nil {
		return fmt.Errorf("dumping the ipsets: %w", err)
	}
	io.WriteString(w, "# ipsets\n")
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], setPrefix) {
			if _, err := io.WriteString(w, stableCreate(line)); err != nil {
				return err
			}
		}
	}
	return nil
}

// stableCreate drops from a "create" line of ipset save the hash parameters the kernel
// picks at random (initval) or tunes itself (bucketsize), so that two dumps of the same
// sets are equal.
func stableCreate(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "create" {
		return line
	}
	var keep []string
	for i := 0; i < len(f); i++ {
		if (f[i] == "initval" || f[i] == "bucketsize") && i+1 < len(f) {
			i++
			continue
		}
		keep = append(keep, f[i])
	}
	return strings.Join(keep, " ") + "\n"
}

// Cleanup implements backends.Backend: in both variants and families it deletes the
// jumps to portico's chains and the chains, then portico's ipsets. A variant whose
// programs are not installed has nothing to clean.
func (b *Backend) Cleanup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
		for _, f := range []model.Family{model.IPv4, model.IPv6} {
			cmds := v.Commands(newFam(f).cmd)
			if _, err := b.lookPath(cmds.Restore); err != nil {
				continue
			}
			if err := cleanupVariant(ctx, b.run, cmds); err != nil {
				errs = append(errs, fmt.Errorf("iptables-%s %s: %w", v, f, err))
			}
		}
	}
	if _, err := b.lookPath("ipset"); err == nil {
		errs = append(errs, destroySets(ctx, b.run))
	}
	for _, fs := range b.fams {
		fs.failed()
	}
	return errors.Join(errs...)
}

// cleanupVariant removes portico's chains and the jumps to them from every table the
// variant's save command prints (without -t: asking for a table would create it).
func cleanupVariant(ctx context.Context, run variant.Runner, cmds variant.Commands) error {
	_, err := removeChains(ctx, run, cmds, porticoChain)
	return err
}

// porticoChain reports whether a chain of any table is portico's.
func porticoChain(_, chain string) bool { return strings.HasPrefix(chain, chainPrefix) }

// removeChains removes, from every table the variant's save command prints, the chains
// owns accepts and every rule of another chain that jumps to one of them, in one restore
// per call; it returns how many chains it removed.
func removeChains(ctx context.Context, run variant.Runner, cmds variant.Commands, owns func(table, chain string) bool) (int, error) {
	save, err := run.Run(ctx, cmds.Save, nil, nil)
	if err != nil {
		return 0, err
	}
	input, n := removeChainsInput(string(save), owns)
	if n == 0 {
		return 0, nil
	}
	_, err = run.Run(ctx, cmds.Restore, variant.RestoreArgs(variant.DefaultLockSeconds), bytes.NewReader(input))
	return n, err
}

// removeChainsInput turns iptables-save output into restore input that deletes every
// jump to an owned chain from the other chains, then flushes and deletes the owned
// chains; it returns the input and the number of chains it deletes.
func removeChainsInput(save string, owns func(table, chain string) bool) ([]byte, int) {
	var b bytes.Buffer
	var table string
	var chains, deletes []string
	total := 0
	flush := func() {
		if len(chains)+len(deletes) == 0 {
			return
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, d := range deletes {
			fmt.Fprintf(&b, "-D %s\n", d)
		}
		for _, c := range chains {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
		total += len(chains)
	}
	for line := range strings.Lines(save) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "*"):
			table, chains, deletes = line[1:], nil, nil
		case line == "COMMIT":
			flush()
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); owns(table, name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			chain, _, _ := strings.Cut(line[len("-A "):], " ")
			if target := jumpTarget(line); !owns(table, chain) && target != "" && owns(table, target) {
				deletes = append(deletes, line[len("-A "):])
			}
		}
	}
	return b.Bytes(), total
}

// destroySets destroys every ipset whose name starts with portico's prefix.
func destroySets(ctx context.Context, run variant.Runner) error {
	out, err := run.Run(ctx, "ipset", []string{"list", "-n"}, nil)
	if err != nil {
		return fmt.Errorf("listing the ipsets: %w", err)
	}
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		if name := strings.TrimSpace(line); strings.HasPrefix(name, setPrefix) {
			fmt.Fprintf(&b, "destroy %s\n", name)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if _, err := run.Run(ctx, "ipset", []string{"restore"}, strings.NewReader(b.String())); err != nil {
		return fmt.Errorf("destroying portico's ipsets: %w", err)
	}
	return nil
}
