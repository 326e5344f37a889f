package restoretest

import (
	"fmt"
	"strings"
)

// Save returns the table in iptables-save form, without the "# Generated"/"# Completed"
// comment lines and with every counter [0:0]: the built-in chains in iptables order, then
// the user chains sorted by name, then the rules of the chains in that same order. An
// empty table name saves every table, in the order of Tables. Save of an unknown table
// returns "".
func (r *Ruleset) Save(tableName string) string {
	if tableName == "" {
		var b strings.Builder
		for _, name := range Tables {
			b.WriteString(r.Save(name))
		}
		return b.String()
	}
	if _, ok := builtinChains[tableName]; !ok {
		return ""
	}
	t := r.table(tableName)
	names := r.Chains(tableName)
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", tableName)
	for _, name := range names {
		fmt.Fprintf(&b, ":%s %s [0:0]\n", name, t.chains[name].Policy)
	}
	for _, name := range names {
		for _, rule := range t.chains[name].Rules {
			fmt.Fprintf(&b, "-A %s %s\n", name, rule.Spec)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
