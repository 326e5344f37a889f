package iptables

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// inFlightLog records, for TestInFlight*, which inputs had ended when each one started
// and how many ran at once.
type inFlightLog struct {
	mu            sync.Mutex
	ended         map[int]bool
	running, most int
}

// run returns input n's program: it checks that the inputs before after have ended, runs
// for a moment and ends with err.
func (l *inFlightLog) run(t *testing.T, n, after int, err error) func() error {
	return func() error {
		l.mu.Lock()
		for i := range after {
			if !l.ended[i] {
				t.Errorf("input %d started before input %d, which it depends on, ended", n, i)
			}
		}
		l.running++
		l.most = max(l.most, l.running)
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.running--
		l.ended[n] = true
		return err
	}
}

// begin returns an inFlight start whose program is run.
func begin(run func() error) func() (func() error, error) {
	return func() (func() error, error) { return run, nil }
}

// TestInFlightRunsIndependentInputsTogether runs ten inputs, two at a time, where some
// depend on all before them and some on the first only: none starts before what it
// depends on has ended, and two do run at once.
func TestInFlightRunsIndependentInputsTogether(t *testing.T) {
	afters := []int{0, 1, 1, 1, 4, 1, 1, 7, 8, 9}
	l := &inFlightLog{ended: map[int]bool{}}
	r := newInFlight(2, func() { t.Error("onFail called without a failure") })
	for n, after := range afters {
		if !r.ready(after) {
			t.Fatalf("input %d: not ready after no failure", n)
		}
		r.start(begin(l.run(t, n, after, nil)))
	}
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	if len(l.ended) != len(afters) {
		t.Errorf("%d inputs ended, want %d", len(l.ended), len(afters))
	}
	if l.most != 2 {
		t.Errorf("at most %d inputs ran at once, want 2", l.most)
	}
}

// TestInFlightOneAtATime: with a limit of one, inputs run one after the other.
func TestInFlightOneAtATime(t *testing.T) {
	l := &inFlightLog{ended: map[int]bool{}}
	r := newInFlight(1, func() {})
	for n := range 5 {
		r.ready(0)
		r.start(begin(l.run(t, n, n, nil)))
	}
	if err := r.wait(); err != nil || l.most != 1 {
		t.Errorf("wait = %v, most at once %d; want nil, 1", err, l.most)
	}
}

// TestInFlightFailure fails inputs 2 and 3, which run together: the error is input 2's,
// onFail runs once, and no input starts once the failure is known.
func TestInFlightFailure(t *testing.T) {
	l := &inFlightLog{ended: map[int]bool{}}
	fails := 0
	r := newInFlight(2, func() { fails++ })
	errs := map[int]error{2: errors.New("input 2"), 3: errors.New("input 3")}
	started := 0
	for n := range 8 {
		after := min(n, 1)
		if !r.ready(after) {
			continue
		}
		if fails > 0 {
			t.Errorf("input %d started after a failure was known", n)
		}
		started++
		r.start(begin(l.run(t, n, after, errs[n])))
	}
	err := r.wait()
	if err == nil || err.Error() != "input 2" {
		t.Errorf("wait = %v, want input 2's failure", err)
	}
	if fails != 1 {
		t.Errorf("onFail ran %d times, want once", fails)
	}
	if started > 4 {
		t.Errorf("started %d inputs, want at most 4 (0 and 1, then 2 and 3 together)", started)
	}
}

// TestInFlightCallersFailure: a failure of the caller's own (fail) stops the inputs after
// it as an input's would.
func TestInFlightCallersFailure(t *testing.T) {
	r := newInFlight(2, func() {})
	r.start(begin(func() error { return nil }))
	r.fail(fmt.Errorf("creating the sets"))
	if r.ready(0) {
		t.Error("ready after a failure")
	}
	if err := r.wait(); err == nil || err.Error() != "creating the sets" {
		t.Errorf("wait = %v, want the caller's failure", err)
	}
}

// TestInFlightFailedStart: an input whose program cannot start fails like one that ran,
// and the inputs after it do not start.
func TestInFlightFailedStart(t *testing.T) {
	r := newInFlight(2, func() {})
	r.start(func() (func() error, error) { return nil, errors.New("not installed") })
	if r.ready(1) {
		t.Error("ready after a failed start")
	}
	if err := r.wait(); err == nil || err.Error() != "not installed" {
		t.Errorf("wait = %v, want the start's failure", err)
	}
}
