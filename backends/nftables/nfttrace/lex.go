package nfttrace

import (
	"errors"
	"strings"
	"sync"

	"github.com/portico-dev/portico/model"
)

// tokenize splits a rule into words: runs of characters other than spaces, where "{",
// "}" and "," are words of their own and a double-quoted string is one word (without its
// quotes).
func tokenize(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			words = append(words, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n':
			flush()
		case '{', '}', ',':
			flush()
			words = append(words, string(c))
		case '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, errors.New("unterminated string")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return words, nil
}

// ruleCache holds the parsed steps of every rule text a tracer has met. Steps are
// immutable, so paths and concurrent traces share them.
type ruleCache struct {
	fam    model.Family
	mu     sync.Mutex
	parsed map[string][]step
}

func newRuleCache(fam model.Family) *ruleCache {
	return &ruleCache{fam: fam, parsed: map[string][]step{}}
}

// get returns the steps of a rule, parsing it the first time.
func (c *ruleCache) get(text string) ([]step, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.parsed[text]; ok {
		return s, nil
	}
	s, err := parseRule(text, c.fam)
	if err != nil {
		return nil, err
	}
	c.parsed[text] = s
	return s, nil
}
