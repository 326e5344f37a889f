package iptrace

import "fmt"

// maxPaths bounds the paths one packet may take (every random choice doubles them).
const maxPaths = 4096

// chooser enumerates the random choices of a packet's paths. Each path is a run from the
// start; at its i-th random match a run takes picks[i] (true: the match holds). After a
// run, next moves to the following untried sequence (depth first), so that every
// combination is run once. Runs are deterministic, so a prefix of picks always leads to
// the same random matches.
type chooser struct {
	picks []bool
	pos   int
	runs  int
}

// choose returns whether the current run's next random match holds.
func (c *chooser) choose() (bool, error) {
	if c.pos == len(c.picks) {
		c.picks = append(c.picks, true)
	}
	v := c.picks[c.pos]
	c.pos++
	return v, nil
}

// next moves to the next untried sequence of picks; it returns false when every one has
// been run, and an error past maxPaths.
func (c *chooser) next() (bool, error) {
	c.pos = 0
	c.runs++
	for i := len(c.picks) - 1; i >= 0; i-- {
		if c.picks[i] {
			c.picks[i] = false
			c.picks = c.picks[:i+1]
			if c.runs >= maxPaths {
				return false, fmt.Errorf("more than %d paths: the random choices multiply too much", maxPaths)
			}
			return true, nil
		}
	}
	return false, nil
}
