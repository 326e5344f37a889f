package iptables

// inFlight runs a full sync's inputs, numbered in the order they are started, up to max
// at a time. An input starts once every input before its after bound is done: an
// iptables-nft-restore resolves the chains its rules jump to against the kernel as it was
// when the program started (a chain another input commits later is "does not exist", at
// its COMMIT), so an input waits for the inputs that create the chains it refers to. Two
// restores that do not depend on each other run together: one parses its input while the
// kernel commits the other's (10,000 Services × 10 endpoints: 12 pieces in 1.5 s instead
// of 2.3 s; a third at a time gained nothing on 2 cores). The one whose commit comes
// second finds the ruleset changed since it read it and retries on its own, with the
// chains the first one created (iptables-nft refreshes its cache and resends its batch).
//
// It is used by one goroutine (the sync's), which starts every program; each is waited
// for on a goroutine of its own, and wait returns only when each has ended.
type inFlight struct {
	max     int
	running int
	done    []bool // by input number
	prefix  int    // inputs [0, prefix) are done
	results chan inputResult
	err     error // the failure of the lowest-numbered input that failed
	errAt   int
	onFail  func() // called once, at the first failure seen
}

// inputResult is how one input ended.
type inputResult struct {
	n   int
	err error
}

func newInFlight(limit int, onFail func()) *inFlight {
	return &inFlight{max: max(limit, 1), results: make(chan inputResult), onFail: onFail}
}

// ready waits until an input whose dependencies are the inputs before after may start:
// they are done, and fewer than max inputs are running. It returns false once an input
// has failed (nothing more is started).
func (r *inFlight) ready(after int) bool {
	for r.running > 0 && (r.running >= r.max || r.prefix < after) {
		r.collect()
	}
	return r.err == nil
}

// start starts the next input: begin starts its program on the calling goroutine (a
// program inherits the network namespace of the thread that starts it), and its wait
// runs on a goroutine of its own.
func (r *inFlight) start(begin func() (wait func() error, err error)) {
	n := len(r.done)
	r.done = append(r.done, false)
	wait, err := begin()
	if err != nil {
		r.ended(inputResult{n, err})
		return
	}
	r.running++
	go func() { r.results <- inputResult{n, wait()} }()
}

// fail records a failure of the caller's own, before any input after it started.
func (r *inFlight) fail(err error) {
	r.record(len(r.done), err)
}

// collect waits for one running input to end and records how it did.
func (r *inFlight) collect() {
	res := <-r.results
	r.running--
	r.ended(res)
}

// ended records that an input ended.
func (r *inFlight) ended(res inputResult) {
	r.done[res.n] = true
	for r.prefix < len(r.done) && r.done[r.prefix] {
		r.prefix++
	}
	r.record(res.n, res.err)
}

// record notes how input number n ended.
func (r *inFlight) record(n int, err error) {
	if err == nil {
		return
	}
	if r.err == nil {
		r.onFail()
	}
	if r.err == nil || n < r.errAt {
		r.err, r.errAt = err, n
	}
}

// wait waits for every running input and returns the failure of the lowest-numbered input
// that failed, if any.
func (r *inFlight) wait() error {
	for r.running > 0 {
		r.collect()
	}
	return r.err
}
