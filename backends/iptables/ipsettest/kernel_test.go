//go:build e2e

package ipsettest

import (
	"errors"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
)

// diffStep is one restore of the differential test.
type diffStep struct {
	name  string
	input string
	line  int // the failing line, 0 when the restore must succeed
}

// diffSteps is applied in order to the fake and to the real `ipset -exist restore`.
var diffSteps = []diffStep{
	{name: "the backend's types", input: lines("# sets", "",
		"create ips hash:ip family inet hashsize 1024 maxelem 65536", "add ips 10.96.0.1", "add ips 10.96.0.2",
		"create ports hash:ip,port family inet hashsize 1000", "add ports 10.96.0.1,tcp:80", "add ports 10.96.0.1,UDP:53",
		"add ports 10.96.0.1,sctp:9", "add ports 10.96.0.3,0",
		"create hairpin hash:ip,port,ip family inet", "add hairpin 10.244.1.10,tcp:8080,10.244.1.10",
		"create fw hash:ip,port,net family inet maxelem 100", "add fw 192.168.60.20,tcp:80,192.168.50.7/24",
		"add fw 192.168.60.20,tcp:80,0.0.0.0/1", "add fw 192.168.60.20,udp:80,192.168.50.8/32",
		"create six hash:ip,port family inet6 hashsize 10 timeout 30", "add six FD00:96::1,tcp:80", "add six ::ffff:1.2.3.4,udp:1",
		"create sixnet hash:ip,port,net family inet6", "add sixnet fd00:96::1,tcp:80,fd00:50::/64", "add sixnet fd00:96::1,tcp:80,::/1")},
	{name: "-exist: re-create, re-add, del of absent", input: lines("create ips hash:ip", "create ips hash:ip family inet6 hashsize 4096",
		"add ips 10.96.0.1", "del ips 10.96.0.9", "del ips 10.96.0.2", "create fw hash:ip,port,net maxelem 100")},
	{name: "swap, flush, destroy", input: lines("create ips-new hash:ip", "add ips-new 10.96.0.7", "swap ips-new ips",
		"destroy ips-new", "create tmp hash:ip,port", "add tmp 1.1.1.1,tcp:1", "flush tmp", "create gone hash:ip", "destroy gone")},
	{name: "a bad line half-way loses the run of adds before it", line: 6, input: lines("add ips 10.96.0.8", "add ports 10.96.0.8,tcp:1",
		"add ips 10.96.0.10", "", "add ips 10.96.0.11", "add ips bogus", "add ips 10.96.0.9")},
	{name: "a bad line of another set loses the run too", line: 3, input: lines("del ips 10.96.0.8", "add ips 10.96.0.12", "add ports 10.0.0.1")},
	{name: "a run of dels is lost too", line: 3, input: lines("add ips 10.96.0.13", "del ips 10.96.0.10", "del ips 10.96.0.300")},
	{name: "a missing set in an add loses the run", line: 2, input: lines("add ips 10.96.0.14", "add nope 1.1.1.1")},
	{name: "a missing set in a flush does not", line: 2, input: lines("add ips 10.96.0.15", "flush nope")},
	{name: "a create refused by the kernel does not", line: 2, input: lines("add ips 10.96.0.16", "create ips hash:ip,port")},
	{name: "a wrong family loses the run", line: 2, input: lines("add six fd00::7,tcp:7", "add six 10.0.0.1,tcp:1")},
	{name: "add to a missing set", line: 1, input: lines("add nope 1.1.1.1")},
	{name: "create with another type", line: 2, input: lines("create a hash:ip", "create a hash:ip,port")},
	{name: "create with another maxelem", line: 1, input: lines("create ips hash:ip maxelem 5")},
	{name: "create with another timeout", line: 1, input: lines("create six hash:ip,port family inet6")},
	{name: "wrong family", line: 1, input: lines("add six 10.0.0.1,tcp:1")},
	{name: "wrong family 6", line: 1, input: lines("add ips fd00::1")},
	{name: "CIDR as a plain address", line: 1, input: lines("add hairpin 10.244.1.10,tcp:8080,10.244.1.0/24")},
	{name: "prefix length 0", line: 1, input: lines("add fw 192.168.60.20,tcp:80,0.0.0.0/0")},
	{name: "swap of other types", line: 1, input: lines("swap ips ports")},
	{name: "swap of other families", line: 2, input: lines("create ips6 hash:ip family inet6", "swap ips ips6")},
	{name: "swap with a missing set", line: 1, input: lines("swap ips nope")},
	{name: "full", line: 4, input: lines("create small hash:ip maxelem 1", "add small 1.1.1.1", "add small 1.1.1.1", "add small 1.1.1.2")},
	{name: "missing port", line: 1, input: lines("add ports 10.0.0.1")},
	{name: "too many components", line: 1, input: lines("add ports 10.0.0.1,tcp:1,10.0.0.1")},
	{name: "unknown type", line: 1, input: lines("create nn hash:net,net")},
	{name: "flush all", input: lines("flush")},
	{name: "destroy all", input: lines("destroy")},
}

// TestDifferentialIpset applies diffSteps to the fake and to `ipset -exist restore` in a
// fresh network namespace, and compares the outcome (the failing line) and ipset save.
func TestDifferentialIpset(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, "ipset")()
	var fake Sets
	for _, step := range diffSteps {
		fakeErr := fake.Restore(step.input)
		realLine, realErr := realRestore(step.input)
		var re *RestoreError
		fakeLine := 0
		if errors.As(fakeErr, &re) {
			fakeLine = re.Line
		} else if fakeErr != nil {
			t.Fatalf("%s: fake error %v is not a *RestoreError", step.name, fakeErr)
		}
		if fakeLine != step.line || realLine != step.line {
			t.Errorf("%s: fake fails at line %d (%v), ipset at line %d (%v), want %d", step.name, fakeLine, fakeErr, realLine, realErr, step.line)
		}
		real, err := realSave()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := fake.Save(); got != real {
			t.Errorf("after %s the sets differ:\nfake:\n%s\nipset save:\n%s", step.name, got, real)
		}
	}
}

// errLineRE finds the line number in ipset's error messages.
var errLineRE = regexp.MustCompile(`Error in line (\d+):`)

// realRestore runs `ipset -exist restore` on input and returns the line its error names
// (-1 for an error without a line number, 0 without an error).
func realRestore(input string) (int, error) {
	cmd := exec.Command("ipset", "-exist", "restore")
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return 0, nil
	}
	err = errors.New(strings.TrimSpace(string(out)))
	if m := errLineRE.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		return n, err
	}
	return -1, err
}

// varyingRE matches the fields of ipset save that differ from run to run.
var varyingRE = regexp.MustCompile(` bucketsize \d+| initval 0x[0-9a-f]+`)

// entryTimeoutRE matches the time left of an entry of a set with a timeout: the fake
// does not model expiry (the backend's sets have no timeout).
var entryTimeoutRE = regexp.MustCompile(` timeout \d+$`)

// realSave runs `ipset save` and normalises it like Sets.Save: no varying fields, the
// sets sorted by name and the entries of each set sorted.
func realSave() (string, error) {
	out, err := exec.Command("ipset", "save").CombinedOutput()
	if err != nil {
		return "", errors.New(strings.TrimSpace(string(out)))
	}
	headers := map[string]string{}
	adds := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "create":
			headers[f[1]] = varyingRE.ReplaceAllString(l, "")
		case len(f) >= 2 && f[0] == "add":
			adds[f[1]] = append(adds[f[1]], entryTimeoutRE.ReplaceAllString(l, ""))
		}
	}
	names := make([]string, 0, len(headers))
	for n := range headers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		sort.Strings(adds[n])
		b.WriteString(headers[n] + "\n")
		for _, a := range adds[n] {
			b.WriteString(a + "\n")
		}
	}
	return b.String(), nil
}
