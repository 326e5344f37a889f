package variant

import (
	"fmt"

	"github.com/coreos/go-iptables/iptables"
)

// Rules is the part of go-iptables' *iptables.IPTables that the backend uses to check its
// chains and the jumps to them from the built-in chains. Tests use a fake.
type Rules interface {
	// ChainExists reports whether chain exists in table.
	ChainExists(table, chain string) (bool, error)
	// Exists reports whether the rule is in chain.
	Exists(table, chain string, rulespec ...string) (bool, error)
	// Insert puts the rule at position pos (1 is first) of chain.
	Insert(table, chain string, pos int, rulespec ...string) error
}

// NewRules returns go-iptables for the plain command of variant v and family f (e.g.
// iptables-legacy), waiting up to lockSeconds for the xtables lock on every call
// (go-iptables passes "--wait <seconds>"). It runs `<command> --version` once.
func NewRules(v Variant, f Family, lockSeconds int) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		proto = iptables.ProtocolIPv6
	}
	cmd := v.Commands(f).Iptables
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(cmd), iptables.Timeout(lockSeconds))
	if err != nil {
		return nil, fmt.Errorf("go-iptables for %s: %w", cmd, err)
	}
	return ipt, nil
}

// EnsureJump inserts the rule at the top of the built-in chain unless it is there already,
// and reports whether it inserted it. It never removes or moves another rule.
func EnsureJump(r Rules, table, chain string, rulespec ...string) (bool, error) {
	ok, err := r.Exists(table, chain, rulespec...)
	if err != nil {
		return false, fmt.Errorf("checking the rule %v in %s %s: %w", rulespec, table, chain, err)
	}
	if ok {
		return false, nil
	}
	if err := r.Insert(table, chain, 1, rulespec...); err != nil {
		return false, fmt.Errorf("inserting the rule %v at the top of %s %s: %w", rulespec, table, chain, err)
	}
	return true, nil
}

// MissingChains returns those of chains that do not exist in table.
func MissingChains(r Rules, table string, chains ...string) ([]string, error) {
	var missing []string
	for _, c := range chains {
		ok, err := r.ChainExists(table, c)
		if err != nil {
			return nil, fmt.Errorf("checking chain %s in table %s: %w", c, table, err)
		}
		if !ok {
			missing = append(missing, c)
		}
	}
	return missing, nil
}
