package iptables

import (
	"context"
	"errors"
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// TestVerifyFindsFlushes removes portico's rules the ways an administrator or a firewall
// reload does, in one family of the fake: Verify reports that family only, and a full sync
// gives back the rules of before.
func TestVerifyFindsFlushes(t *testing.T) {
	for _, tc := range []struct{ name, input string }{
		{"iptables -t nat -F", "*nat\n-F\nCOMMIT\n"},
		{"iptables -t filter -F", "*filter\n-F\nCOMMIT\n"},
		{"iptables -t mangle -F", "*mangle\n-F\nCOMMIT\n"},
		{"the jump from nat OUTPUT deleted", "*nat\n-D OUTPUT -j PORTICO-SERVICES\nCOMMIT\n"},
		{"a rule added to PORTICO-POSTROUTING", "*nat\n-A PORTICO-POSTROUTING -j RETURN\nCOMMIT\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, k := fakeBackend(t)
			st := backendtest.FlowStates(t)[0]
			backendtest.SyncAll(t, b, nil, st)
			before := k.dump()
			ctx := context.Background()
			for _, f := range []model.Family{model.IPv4, model.IPv6} {
				if err := b.Verify(ctx, f); err != nil {
					t.Fatalf("Verify(%s) before any change = %v", f, err)
				}
			}
			if err := k.rs[model.IPv6].Restore(tc.input, true); err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(ctx, model.IPv4); err != nil {
				t.Errorf("Verify(IPv4) = %v, want nil: only IPv6 was changed", err)
			}
			if err := b.Verify(ctx, model.IPv6); !errors.Is(err, backends.ErrRulesMissing) {
				t.Fatalf("Verify(IPv6) = %v, want ErrRulesMissing", err)
			}
			if err := b.Sync(ctx, st.Table(model.IPv6), model.Diff{Full: true}); err != nil {
				t.Fatal(err)
			}
			if got := k.dump(); got != before {
				t.Errorf("after the repair the kernel differs from before:\n%s", backendtest.FirstDiff(before, got))
			}
			if err := b.Verify(ctx, model.IPv6); err != nil {
				t.Errorf("Verify(IPv6) after the repair = %v", err)
			}
		})
	}
}

// TestVerifyReadsHeadersFirst checks the iptables-legacy path: while the tables' headers
// count what they counted after the last sync or check, Verify lists nothing; a change by
// someone else is then checked by listing, and a flush still found.
func TestVerifyReadsHeadersFirst(t *testing.T) {
	b, k := fakeBackend(t)
	k.headers = true
	st := backendtest.FlowStates(t)[0]
	backendtest.SyncAll(t, b, nil, st)
	ctx := context.Background()
	if err := b.Verify(ctx, model.IPv4); err != nil || k.lists != 0 {
		t.Fatalf("Verify over unchanged headers = %v after %d listings, want nil and none", err, k.lists)
	}
	if err := k.rs[model.IPv4].Restore("*filter\n:HOST - [0:0]\nCOMMIT\n", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx, model.IPv4); err != nil || k.lists == 0 {
		t.Fatalf("Verify after another program's change = %v after %d listings, want nil after listing", err, k.lists)
	}
	lists := k.lists
	if err := b.Verify(ctx, model.IPv4); err != nil || k.lists != lists {
		t.Fatalf("Verify after the check = %v, listed %d more times, want the new headers kept", err, k.lists-lists)
	}
	if err := k.rs[model.IPv4].Restore("*nat\n-F\nCOMMIT\n", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx, model.IPv4); !errors.Is(err, backends.ErrRulesMissing) {
		t.Fatalf("Verify after iptables -t nat -F = %v, want ErrRulesMissing", err)
	}
}

// TestVerifyStopsWhenCancelled: a check whose context is cancelled (the proxier's runner
// cancels it when a sync is requested) lists nothing more, reports the cancellation and
// not missing rules, and leaves the next check to list as before.
func TestVerifyStopsWhenCancelled(t *testing.T) {
	b, k := fakeBackend(t)
	st := backendtest.FlowStates(t)[0]
	backendtest.SyncAll(t, b, nil, st)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Verify(ctx, model.IPv4)
	if !errors.Is(err, context.Canceled) || errors.Is(err, backends.ErrRulesMissing) || k.lists != 0 {
		t.Fatalf("Verify with a cancelled context = %v after %d listings, want context.Canceled after none", err, k.lists)
	}
	if err := b.Verify(context.Background(), model.IPv4); err != nil || k.lists == 0 {
		t.Fatalf("Verify after the cancelled one = %v after %d listings, want nil after listing", err, k.lists)
	}
}
