package nfttrace

import "fmt"

// chooser enumerates the random choices of a packet's paths. Each path is a run from the
// start; at the i-th random choice a run takes picks[i]. After a run, next moves to the
// following untried sequence of picks (depth first), so that every combination of choices
// is run exactly once. Runs are deterministic, so a sequence's prefix always leads to the
// same choices.
type chooser struct {
	picks []int // the choice taken at each random point of the current run
	sizes []int // how many choices each of those points had
	pos   int   // the next random point of the current run
}

// choose returns which of n possibilities the current run takes at its next random point.
func (c *chooser) choose(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("a random choice among %d possibilities", n)
	}
	if n == 1 {
		return 0, nil
	}
	if c.pos == len(c.picks) {
		c.picks = append(c.picks, 0)
		c.sizes = append(c.sizes, n)
	}
	if c.sizes[c.pos] != n {
		return 0, fmt.Errorf("internal error: random point %d has %d choices, %d before", c.pos, n, c.sizes[c.pos])
	}
	v := c.picks[c.pos]
	c.pos++
	return v, nil
}

// next moves to the next untried sequence of choices; it returns false when every one has
// been run.
func (c *chooser) next() bool {
	c.pos = 0
	for i := len(c.picks) - 1; i >= 0; i-- {
		if c.picks[i]+1 < c.sizes[i] {
			c.picks[i]++
			c.picks, c.sizes = c.picks[:i+1], c.sizes[:i+1]
			return true
		}
	}
	return false
}
