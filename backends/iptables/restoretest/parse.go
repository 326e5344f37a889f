package restoretest

import (
	"fmt"
	"strings"
)

// SplitArgs splits a restore line (or a Rule.Spec) into arguments the way iptables-restore does: blanks
// separate arguments, double quotes group blanks into one argument (the quotes are
// removed) and a backslash escapes the next character inside quotes.
func SplitArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quoted && ch == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case ch == '"':
			quoted, inArg = !quoted, true
		case !quoted && (ch == ' ' || ch == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: unterminated quote", ErrSyntax)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// joinArgs joins arguments back into normalised text: one blank between arguments,
// arguments containing blanks or quotes, and every --comment argument, double-quoted, as
// iptables-save prints them.
func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"") || (i > 0 && args[i-1] == "--comment") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// parseRule builds a Rule from a rule's arguments (after the chain name, and after the
// position for -I/-R).
func parseRule(args []string) (Rule, error) {
	if len(args) == 0 {
		return Rule{}, fmt.Errorf("%w: empty rule", ErrSyntax)
	}
	rule := Rule{Spec: joinArgs(args)}
	for i := 0; i < len(args); i++ {
		opt := args[i]
		if opt != "-j" && opt != "--jump" && opt != "-g" && opt != "--goto" && opt != "--comment" {
			continue
		}
		if i+1 >= len(args) {
			return Rule{}, fmt.Errorf("%w: option %s requires an argument", ErrSyntax, opt)
		}
		i++
		switch opt {
		case "--comment":
			rule.Comment = args[i]
		default:
			if rule.Target != "" {
				return Rule{}, fmt.Errorf("%w: more than one target", ErrSyntax)
			}
			rule.Target, rule.Goto = args[i], opt == "-g" || opt == "--goto"
		}
	}
	return rule, nil
}

// chainDecl is a parsed `:CHAIN POLICY [packets:bytes]` line.
type chainDecl struct {
	name, policy string
}

// parseChainDecl parses a chain declaration line (with its leading colon).
func parseChainDecl(line string) (chainDecl, error) {
	fields := strings.Fields(strings.TrimPrefix(line, ":"))
	if len(fields) < 2 || len(fields) > 3 || fields[0] == "" {
		return chainDecl{}, fmt.Errorf("%w: bad chain declaration", ErrSyntax)
	}
	if len(fields) == 3 && !validCounters(fields[2]) {
		return chainDecl{}, fmt.Errorf("%w: bad counters %q", ErrSyntax, fields[2])
	}
	if len(fields[0]) > 28 {
		return chainDecl{}, fmt.Errorf("%w: chain name %q too long (max 28)", ErrSyntax, fields[0])
	}
	return chainDecl{name: fields[0], policy: fields[1]}, nil
}

// validCounters reports whether s has the form [packets:bytes].
func validCounters(s string) bool {
	var p, b uint64
	n, err := fmt.Sscanf(s, "[%d:%d]", &p, &b)
	return err == nil && n == 2 && strings.HasSuffix(s, "]")
}
