package variant

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeRules is a table of chains holding rules.
type fakeRules struct {
	chains map[string][]string // "table/chain" -> rules
	err    error
}

func (f *fakeRules) ChainExists(table, chain string) (bool, error) {
	_, ok := f.chains[table+"/"+chain]
	return ok, f.err
}

func (f *fakeRules) Exists(table, chain string, spec ...string) (bool, error) {
	return slices.Contains(f.chains[table+"/"+chain], strings.Join(spec, " ")), f.err
}

func (f *fakeRules) Insert(table, chain string, pos int, spec ...string) error {
	k := table + "/" + chain
	f.chains[k] = slices.Insert(f.chains[k], pos-1, strings.Join(spec, " "))
	return f.err
}

func TestEnsureJump(t *testing.T) {
	r := &fakeRules{chains: map[string][]string{"nat/PREROUTING": {"-j DOCKER"}}}
	jump := []string{"-m", "comment", "--comment", "portico", "-j", "PORTICO-SERVICES"}
	for i, want := range []bool{true, false} {
		got, err := EnsureJump(r, "nat", "PREROUTING", jump...)
		if err != nil || got != want {
			t.Errorf("call %d: EnsureJump = %v, %v; want %v", i, got, err, want)
		}
	}
	want := []string{strings.Join(jump, " "), "-j DOCKER"}
	if got := r.chains["nat/PREROUTING"]; !slices.Equal(got, want) {
		t.Errorf("PREROUTING = %q, want %q (jump first, once, others kept)", got, want)
	}
	r.err = errors.New("boom")
	if _, err := EnsureJump(r, "nat", "OUTPUT", "-j", "X"); !errors.Is(err, r.err) || !strings.Contains(err.Error(), "nat OUTPUT") {
		t.Errorf("err = %v", err)
	}
}

func TestMissingChains(t *testing.T) {
	r := &fakeRules{chains: map[string][]string{"nat/PORTICO-SERVICES": nil}}
	got, err := MissingChains(r, "nat", "PORTICO-SERVICES", "PORTICO-POSTROUTING")
	if err != nil || !slices.Equal(got, []string{"PORTICO-POSTROUTING"}) {
		t.Errorf("MissingChains = %q, %v", got, err)
	}
}
