package proxier

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"
)

// runLog records the start time of each run of a runner under test; script decides what
// run i (counting from 0) returns and may ask the runner for another run.
type runLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *runLog) Times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times...)
}

// waitRuns waits for at least n runs and returns their start times.
func (l *runLog) waitRuns(t *testing.T, n int) []time.Time {
	t.Helper()
	var times []time.Time
	eventually(t, "runs", func() bool {
		times = l.Times()
		return len(times) >= n
	}, nil)
	return times
}

// startRunner runs a runner until the test ends. script(r, i) is the result of run i.
func startRunner(t *testing.T, minInterval, maxInterval time.Duration, tune func(*runner), script func(r *runner, i int) error) (*runner, *runLog) {
	t.Helper()
	log := &runLog{}
	var r *runner
	r = newRunner(minInterval, maxInterval, func(context.Context) error {
		log.mu.Lock()
		i := len(log.times)
		log.times = append(log.times, time.Now())
		log.mu.Unlock()
		if script == nil {
			return nil
		}
		return script(r, i)
	})
	if tune != nil {
		tune(r)
	}
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Error("runner did not stop")
		}
	})
	return r, log
}

func TestRunnerRunsImmediately(t *testing.T) {
	start := time.Now()
	_, log := startRunner(t, time.Hour, time.Hour, nil, nil)
	times := log.waitRuns(t, 1)
	if d := times[0].Sub(start); d > 5*time.Second {
		t.Errorf("first run after %v; want it immediately", d)
	}
}

func TestRunnerCoalescesRequests(t *testing.T) {
	const minInterval = 100 * time.Millisecond
	r, log := startRunner(t, minInterval, time.Hour, nil, nil)
	first := log.waitRuns(t, 1)[0]
	for range 100 {
		r.Request()
	}
	times := log.waitRuns(t, 2)
	if gap := times[1].Sub(first); gap < minInterval {
		t.Errorf("second run %v after the first; want at least minInterval %v", gap, minInterval)
	}
	time.Sleep(minInterval + 50*time.Millisecond)
	if n := len(log.Times()); n != 2 {
		t.Errorf("%d runs after 100 requests within minInterval; want them coalesced into 1", n-1)
	}

	// A request made long after the last run is served without waiting minInterval again.
	time.Sleep(minInterval)
	asked := time.Now()
	r.Request()
	times = log.waitRuns(t, 3)
	if d := times[2].Sub(asked); d >= minInterval {
		t.Errorf("run %v after a request made when no run was due; want it at once", d)
	}
}

func TestRunnerPeriodic(t *testing.T) {
	const maxInterval = 50 * time.Millisecond
	_, log := startRunner(t, time.Millisecond, maxInterval, nil, nil)
	times := log.waitRuns(t, 4)
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < maxInterval {
			t.Errorf("periodic run %d came %v after the previous one; want maxInterval %v", i, gap, maxInterval)
		}
	}
}

var errRun = errors.New("run failed")

func TestRunnerBackoff(t *testing.T) {
	t.Run("grows and is capped", func(t *testing.T) {
		// Backoffs 10, 20, 30, 30, 30, 30ms; without the cap 10, 20, 40, 80, 160, 320ms.
		_, log := startRunner(t, time.Millisecond, time.Hour, func(r *runner) {
			r.retryMin, r.retryMax = 10*time.Millisecond, 30*time.Millisecond
		}, func(_ *runner, i int) error {
			if i < 7 {
				return errRun
			}
			return nil
		})
		times := log.waitRuns(t, 8)
		want := []time.Duration{10, 20, 30, 30, 30, 30, 30}
		var lastThree time.Duration
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			if lo := want[i-1] * time.Millisecond; gap < lo {
				t.Errorf("retry %d after %v; want at least %v", i, gap, lo)
			}
			if i >= len(times)-3 {
				lastThree += gap
			}
		}
		if lastThree > 250*time.Millisecond {
			t.Errorf("the last three retries took %v; the backoff is not capped at 30ms", lastThree)
		}
	})

	t.Run("resets after a success", func(t *testing.T) {
		// Runs 0-3 fail (backoffs 10, 20, 40, 80ms), run 4 succeeds and asks for run 5,
		// which fails: its retry must come after retryMin again, not after 160ms.
		_, log := startRunner(t, time.Millisecond, time.Hour, func(r *runner) {
			r.retryMin, r.retryMax = 10*time.Millisecond, time.Second
		}, func(r *runner, i int) error {
			switch {
			case i < 4, i == 5:
				return errRun
			case i == 4:
				r.Request()
			}
			return nil
		})
		times := log.waitRuns(t, 7)
		if gap := times[4].Sub(times[3]); gap < 80*time.Millisecond {
			t.Errorf("fourth retry after %v; want at least 80ms", gap)
		}
		if gap := times[6].Sub(times[5]); gap < 10*time.Millisecond || gap >= 100*time.Millisecond {
			t.Errorf("retry after a success came after %v; want retryMin (10ms)", gap)
		}
	})
}

// TestRunnerSchedule checks due, backoff and runOnce with a fake clock.
func TestRunnerSchedule(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := true
	r := newRunner(time.Second, time.Minute, func(context.Context) error {
		if fail {
			return errRun
		}
		return nil
	})
	r.now = func() time.Time { return now }
	r.retryMin, r.retryMax = 2*time.Second, 30*time.Second

	st := runState{pending: true}
	if due := r.due(st); !due.Before(now) {
		t.Errorf("first run due at %v; want before now (%v)", due, now)
	}
	var got []time.Duration
	for range 6 {
		r.runOnce(ctx, &st)
		if st.lastRun != now || st.pending {
			t.Fatalf("after runOnce: %+v; want lastRun=now, not pending", st)
		}
		got = append(got, r.due(st).Sub(now))
		now = now.Add(time.Minute)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("retry delay after %d failures = %v, want %v", i+1, got[i], want[i])
		}
	}
	// A request does not shorten the backoff.
	st.pending = true
	if d := r.due(st).Sub(now.Add(-time.Minute)); d != 30*time.Second {
		t.Errorf("pending request during backoff: due after %v, want 30s", d)
	}

	fail = false
	r.runOnce(ctx, &st)
	if st.failures != 0 {
		t.Errorf("failures = %d after a success, want 0", st.failures)
	}
	if d := r.due(st).Sub(now); d != time.Minute {
		t.Errorf("idle: next run after %v, want maxInterval", d)
	}
	st.pending = true
	if d := r.due(st).Sub(now); d != time.Second {
		t.Errorf("pending: next run after %v, want minInterval", d)
	}

	// The backoff never goes below minInterval.
	r.minInterval = 5 * time.Second
	if d := r.backoff(1); d != 5*time.Second {
		t.Errorf("backoff(1) with minInterval 5s = %v, want 5s", d)
	}
}
