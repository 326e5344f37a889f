package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/portico-dev/portico/e2e/harness/env"
)

// conntrackLines bounds how much of the conntrack table the demo prints.
const conntrackLines = 12

// showDump prints `portico dump`: the ruleset as the kernel holds it, then the start of
// the conntrack table.
func showDump(ctx context.Context, e *env.Env) error {
	step(5, steps, "portico dump (run in node-a: the rules as the kernel holds them, then conntrack)")
	out, err := e.Portico.Command(ctx, "dump")
	if err != nil {
		return err
	}
	rules, ct, _ := strings.Cut(out, "# conntrack table\n")
	fmt.Println(indent(rules, "      "))
	lines := strings.Split(strings.TrimRight(ct, "\n"), "\n")
	fmt.Printf("      # conntrack table (%d entries; the first %d)\n", len(lines), min(len(lines), conntrackLines))
	fmt.Println(indent(strings.Join(lines[:min(len(lines), conntrackLines)], "\n"), "      "))
	step(6, steps, "Checks")
	if strings.Contains(rules, "demo/db") {
		return fmt.Errorf("the dump holds rules for the ExternalName Service demo/db")
	}
	info("no rule mentions the ExternalName Service demo/db, as expected")
	code, body, err := e.Portico.Get(ctx, 10256, "/healthz")
	if err != nil {
		return err
	}
	info("/healthz on node-a:10256 answers %d %s", code, strings.TrimSpace(body))
	return nil
}
