package traffic

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

func TestAnswerRoundTrip(t *testing.T) {
	local := netip.MustParseAddrPort("[fd00:244:2::10]:80")
	peer := netip.MustParseAddrPort("192.168.50.10:40000")
	r := answered(Answer(local, peer), netip.MustParseAddrPort("10.0.0.1:1"))
	if r.Outcome != OK || r.Server != local || r.SeenPeer != peer {
		t.Fatalf("%+v", r)
	}
	if r := answered("nonsense\n", netip.AddrPort{}); r.Outcome != Other || r.Err == nil {
		t.Fatalf("malformed answer: %+v", r)
	}
}

func TestClassify(t *testing.T) {
	ctx := context.Background()
	cases := map[error]Outcome{
		nil: OK,
		fmt.Errorf("dial: %w", syscall.ECONNREFUSED):   Refused,
		fmt.Errorf("read: %w", syscall.ECONNRESET):     Reset,
		fmt.Errorf("dial: %w", syscall.EHOSTUNREACH):   Unreachable,
		fmt.Errorf("dial: %w", syscall.ENETUNREACH):    Unreachable,
		fmt.Errorf("read: %w", os.ErrDeadlineExceeded): Timeout,
		fmt.Errorf("dial: %w", syscall.ETIMEDOUT):      Timeout,
		fmt.Errorf("dial: %w", syscall.EPERM):          Other,
	}
	for err, want := range cases {
		if got := Classify(ctx, err); got != want {
			t.Errorf("Classify(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestSCTPSupportedAnswers(t *testing.T) {
	ok, why := SCTPSupported()
	if !ok && why == "" {
		t.Error("unsupported without a reason")
	}
}
