//go:build e2e

package restoretest

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
)

// diffStep is one restore of the differential test.
type diffStep struct {
	name    string
	input   string
	noflush bool
	fails   bool // the real tool and the fake must both fail
}

// diffSteps is applied in order to the fake and to the real tool. The steps avoid the
// cases where the fake is stricter than iptables-nft (see the package comment): no user
// chain gets a policy, no built-in chain is deleted.
var diffSteps = []diffStep{
	{name: "full filter", input: lines("*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
		":A - [0:0]", ":B - [0:0]", "-A INPUT -j A", "-A A -s 10.0.0.1/32 -j ACCEPT", "-A A -j B",
		"-A B -j DROP", "-A OUTPUT -d 1.2.3.4/32 -j ACCEPT", "COMMIT")},
	{name: "full nat", input: lines("*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
		":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":SVC-1 - [0:0]", ":SVC-2 - [0:0]",
		"-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES",
		`-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "ns/one:http" -m tcp --dport 80 -j SVC-1`,
		`-A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m comment --comment "ns/two:http" -m tcp --dport 80 -g SVC-2`,
		"-A SVC-1 -p tcp -j DNAT --to-destination 10.244.0.1:8080",
		"-A SVC-2 -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.0.2:8080",
		"-A SVC-2 -p tcp -j DNAT --to-destination 10.244.0.3:8080",
		"-A POSTROUTING -j MASQUERADE", "COMMIT")},
	{name: "noflush redeclare", noflush: true, input: lines("*filter", ":INPUT DROP [0:0]", ":A - [0:0]",
		"-A A -j RETURN", "COMMIT", "*nat", ":SVC-2 - [0:0]", "-A SVC-2 -p tcp -j DNAT --to-destination 10.244.0.4:8080", "COMMIT")},
	{name: "append insert delete", noflush: true, input: lines("*filter", ":T - [0:0]",
		"-A T -s 1.1.1.1/32 -j ACCEPT", "-I T 2 -s 2.2.2.2/32 -j ACCEPT", "-I T -s 3.3.3.3/32 -j ACCEPT",
		"-D T -s 1.1.1.1/32 -j ACCEPT", "-A T -s 5.5.5.5/32 -j DROP", "-D T 1", "-A B -j T", "COMMIT")},
	// -R of a rule written by the same restore crashes iptables-nft-restore 1.8.9 (SIGSEGV);
	// -R of a committed rule works.
	{name: "replace", noflush: true, input: lines("*filter", "-R T 1 -s 4.4.4.4/32 -j ACCEPT", "COMMIT")},
	{name: "jump to missing chain", noflush: true, fails: true, input: lines("*filter", ":U - [0:0]", "-A INPUT -j NOPE", "COMMIT")},
	{name: "first block stays", noflush: true, fails: true, input: lines("*nat", ":P - [0:0]", "COMMIT",
		"*filter", "-A INPUT -j NOPE", "COMMIT")},
	{name: "delete referenced chain", noflush: true, fails: true, input: lines("*filter", "-X T", "COMMIT")},
	{name: "delete chain with rules", noflush: true, fails: true, input: lines("*filter", "-D B -j T", "-X T", "COMMIT")},
	{name: "missing COMMIT", noflush: true, fails: true, input: lines("*filter", ":Q - [0:0]")},
	{name: "outside a table", noflush: true, fails: true, input: lines("-A INPUT -j ACCEPT")},
	{name: "unknown table", noflush: true, fails: true, input: lines("*bogus", "COMMIT")},
	{name: "delete missing rule", noflush: true, fails: true, input: lines("*filter", "-D OUTPUT -d 9.9.9.9/32 -j ACCEPT", "COMMIT")},
	{name: "new existing chain", noflush: true, fails: true, input: lines("*filter", "-N T", "COMMIT")},
	{name: "insert past the end", noflush: true, fails: true, input: lines("*filter", "-I T 9 -j DROP", "COMMIT")},
	{name: "flush and delete", noflush: true, input: lines("*filter", "-D B -j T", "-F T", "-X T", "-N C", "COMMIT")},
	{name: "flush all, delete all", noflush: true, input: lines("*nat", "-F", "-X", "COMMIT")},
	{name: "full filter, FORWARD (DROP) undeclared", input: lines("*filter", ":INPUT ACCEPT [0:0]", ":Y - [0:0]", "COMMIT")},
	{name: "full filter again", input: lines("*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
		":Z - [0:0]", "-A FORWARD -j Z", "COMMIT")},
}

// TestDifferentialNft applies diffSteps to the fake and to iptables-nft-restore in a fresh
// network namespace and compares the outcome and iptables-save of every table.
func TestDifferentialNft(t *testing.T) {
	differential(t, false, "iptables-nft-restore", "iptables-nft-save")
}

// TestDifferentialLegacy does the same with iptables-legacy-restore.
func TestDifferentialLegacy(t *testing.T) {
	differential(t, true, "iptables-legacy-restore", "iptables-legacy-save")
}

// differential runs diffSteps against the fake (with Legacy set to legacy) and the real
// restore tool.
func differential(t *testing.T, legacy bool, restoreTool, saveTool string) {
	defer backendtest.EnterFreshNetns(t, restoreTool, saveTool)()
	fake := Ruleset{Legacy: legacy}
	for _, step := range diffSteps {
		fakeErr := fake.Restore(step.input, step.noflush)
		realLine, realErr := realRestore(restoreTool, step.input, step.noflush)
		if (fakeErr != nil) != step.fails || (realErr != nil) != step.fails {
			t.Fatalf("%s: fake err %v, real err %v, want failure %v", step.name, fakeErr, realErr, step.fails)
		}
		var re *RestoreError
		if errors.As(fakeErr, &re) && realLine != 0 && re.Line != realLine && !commitLine(step.input, realLine) {
			t.Errorf("%s: fake fails at line %d, %s at line %d (%v)", step.name, re.Line, restoreTool, realLine, realErr)
		}
		for _, table := range Tables {
			real, err := realSave(saveTool, table)
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if got := fake.Save(table); got != real {
				t.Errorf("after %s, table %s differs:\nfake:\n%s\n%s:\n%s", step.name, table, got, saveTool, real)
			}
		}
	}
}

// commitLine reports whether line n (1-based) of input is COMMIT: iptables-nft-restore
// checks jump targets when it commits, so it names the block's COMMIT line where the
// fake (and iptables-legacy-restore) name the rule.
func commitLine(input string, n int) bool {
	l := strings.Split(input, "\n")
	return n >= 1 && n <= len(l) && strings.TrimSpace(l[n-1]) == "COMMIT"
}

// lineRE finds the line number in the real tools' error messages.
var lineRE = regexp.MustCompile(`line:? (\d+)`)

// realRestore runs the real tool on input and returns the line number its error names
// (0 if none) and the error with its output.
func realRestore(tool, input string, noflush bool) (int, error) {
	args := []string{"-w"}
	if noflush {
		args = append(args, "--noflush")
	}
	cmd := exec.Command(tool, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return 0, nil
	}
	line := 0
	if m := lineRE.FindSubmatch(out); m != nil {
		line, _ = strconv.Atoi(string(m[1]))
	}
	return line, &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: bytes.TrimSpace(out)}
}

// countersRE matches the [packets:bytes] counters of a chain line.
var countersRE = regexp.MustCompile(`\[\d+:\d+\]`)

// realSave runs the real save tool for one table and normalises its output like Save:
// no comment lines, counters [0:0].
func realSave(tool, table string) (string, error) {
	out, err := exec.Command(tool, "-t", table).CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(countersRE.ReplaceAllString(l, "[0:0]") + "\n")
	}
	return b.String(), nil
}
