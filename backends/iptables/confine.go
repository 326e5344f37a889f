package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/model"
)

// maxConfineTries bounds how many Service ports one Sync may leave out for rules the
// kernel or iptables-restore refused, each costing a failed restore and a full rewrite.
const maxConfineTries = 4

// restoreFailure is a failed iptables-restore and the input it was given.
type restoreFailure struct {
	input []byte
	err   error
}

func (e *restoreFailure) Error() string { return e.err.Error() }
func (e *restoreFailure) Unwrap() error { return e.err }

// failedLineRE finds the line iptables-restore (both variants) blames.
var failedLineRE = regexp.MustCompile(`Error occurred at line: (\d+)`)

// failedLine returns the input line a failed restore blamed, if it names one.
func failedLine(err error) (string, bool) {
	var rf *restoreFailure
	if !errors.As(err, &rf) {
		return "", false
	}
	m := failedLineRE.FindStringSubmatch(rf.err.Error())
	if m == nil {
		return "", false
	}
	n, _ := strconv.Atoi(m[1])
	lines := bytes.Split(rf.input, []byte("\n"))
	if n < 1 || n > len(lines) {
		return "", false
	}
	return string(lines[n-1]), true
}

// culprit returns the Service port whose rule a failed restore blamed: the owner of a
// per-port chain, or of a rule in a shared chain. Failures at a COMMIT line (the kernel
// refusing a whole table) or in a fixed chain blame nobody.
func (fs *familyState) culprit(err error) (model.ServicePortName, bool) {
	line, ok := failedLine(err)
	if !ok {
		return model.ServicePortName{}, false
	}
	chain, spec, ok := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
	if !ok || !strings.HasPrefix(line, "-A ") {
		return model.ServicePortName{}, false
	}
	if r, id := fs.x.rankOf(chain); r == rankPort {
		name, ok := fs.ids[id]
		return name, ok
	}
	for owner, rules := range fs.shared[chain] {
		for _, r := range rules {
			if r == spec {
				return owner, true
			}
		}
	}
	return model.ServicePortName{}, false
}

// confine records that the kernel refused a port's rules: later syncs leave it out (and
// report it) until a Diff names it again or a full sync retries it.
func (fs *familyState) confine(name model.ServicePortName, err error) {
	line, _ := failedLine(err)
	fs.refused[name] = fmt.Errorf("iptables-restore refused its rule %q: %w", line, err)
}
