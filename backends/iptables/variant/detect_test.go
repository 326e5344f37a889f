package variant

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func allSaves(legacy4, legacy6, nft4, nft6 string) *fakeRunner {
	return &fakeRunner{out: map[string]string{
		"iptables-legacy-save":  legacy4,
		"ip6tables-legacy-save": legacy6,
		"iptables-nft-save":     nft4,
		"ip6tables-nft-save":    nft6,
	}}
}

func TestDetect(t *testing.T) {
	empty := saveOf(0)
	tests := []struct {
		name   string
		run    *fakeRunner
		want   Variant
		reason string
	}{
		{"nothing anywhere: nft", allSaves(empty, empty, empty, empty), NFT, "default"},
		{"empty outputs: nft", allSaves("", "", "", ""), NFT, "default"},
		{"legacy holds rules", allSaves(saveOf(3), empty, saveOf(1), empty), Legacy, "more rules"},
		{"legacy rules in ip6tables only", allSaves(empty, saveOf(2), empty, empty), Legacy, "more rules"},
		{"nft holds more", allSaves(saveOf(2), empty, saveOf(1), saveOf(2)), NFT, "more rules"},
		{"equal: nft", allSaves(saveOf(2), empty, empty, saveOf(2)), NFT, "default"},
		{"kubelet hint in legacy beats nft rules",
			allSaves(saveOf(0, "KUBE-IPTABLES-HINT"), empty, saveOf(50), empty), Legacy, "kubelet"},
		{"kubelet canary in nft beats legacy rules",
			allSaves(saveOf(50), empty, empty, saveOf(0, "KUBE-KUBELET-CANARY")), NFT, "kubelet"},
		{"hints in both: more rules",
			allSaves(saveOf(5, "KUBE-IPTABLES-HINT"), empty, saveOf(1, "KUBE-IPTABLES-HINT"), empty), Legacy, "more rules"},
		{"a chain named like the hint with a suffix is no hint",
			allSaves(saveOf(0, "KUBE-IPTABLES-HINTS"), empty, saveOf(1), empty), NFT, "more rules"},
		{"only legacy installed", &fakeRunner{out: map[string]string{
			"iptables-legacy-save": empty, "ip6tables-legacy-save": empty}}, Legacy, "only its save"},
		{"nothing installed: nft", &fakeRunner{}, NFT, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(context.Background(), tt.run)
			if err != nil {
				t.Fatal(err)
			}
			if got.Variant != tt.want || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Detect = %s (%q), want %s because of %q", got.Variant, got.Reason, tt.want, tt.reason)
			}
			if !strings.HasPrefix(got.Reason, "using iptables-"+string(tt.want)) {
				t.Errorf("reason %q does not name the variant", got.Reason)
			}
		})
	}
}

func TestDetectRunsSavesWithoutTable(t *testing.T) {
	run := allSaves("", "", "", "")
	if _, err := Detect(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	want := []string{"iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"}
	if strings.Join(run.calls, ",") != strings.Join(want, ",") {
		t.Errorf("calls = %q, want %q (no -t: legacy would create the table)", run.calls, want)
	}
}

func TestDetectKeepsErrors(t *testing.T) {
	boom := errors.New("boom")
	run := allSaves(saveOf(4), "", saveOf(1), "")
	run.fail = map[string]error{"ip6tables-legacy-save": boom}
	got, err := Detect(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	s := got.Seen[Legacy]
	if got.Variant != Legacy || s.Rules != 4 || s.Ran != 1 || len(s.Errors) != 1 || !errors.Is(s.Errors[0], boom) {
		t.Errorf("got %+v, want legacy with 4 rules, one save run and the error kept", got)
	}
}

func TestDetectStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Detect(ctx, allSaves("", "", "", ""))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		v    Variant
		f    Family
		want Commands
	}{
		{NFT, IPv4, Commands{"iptables-nft-restore", "iptables-nft-save", "iptables-nft"}},
		{NFT, IPv6, Commands{"ip6tables-nft-restore", "ip6tables-nft-save", "ip6tables-nft"}},
		{Legacy, IPv4, Commands{"iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy"}},
		{Legacy, IPv6, Commands{"ip6tables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy"}},
	}
	for _, tt := range tests {
		if got := (Result{Variant: tt.v}).Commands(tt.f); got != tt.want {
			t.Errorf("%s %s: %+v, want %+v", tt.v, tt.f, got, tt.want)
		}
	}
}
