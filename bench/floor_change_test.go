package bench

import "testing"

// TestPickChangeChain: the first nat chain with a random endpoint pick is rewritten with
// every one of its rules (those before the first pick included), and nothing of the other
// tables or chains.
func TestPickChangeChain(t *testing.T) {
	save := `*filter
:PORTICO-CHECKS - [0:0]
-A PORTICO-X -m statistic --mode random --probability 0.5 -j DROP
COMMIT
*nat
:PORTICO-C-A - [0:0]
:PORTICO-C-B - [0:0]
-A PREROUTING -j PORTICO-SERVICES
-A PORTICO-C-B -j PORTICO-MARK-OFF-CLUSTER
-A PORTICO-C-A -j PORTICO-MARK-OFF-CLUSTER
-A PORTICO-C-B -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.1:80
-A PORTICO-C-A -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.2:80
-A PORTICO-C-B -p tcp -j DNAT --to-destination 10.0.0.3:80
COMMIT
`
	c, ok := pickChangeChain(save)
	want := "*nat\n:PORTICO-C-B - [0:0]\n" +
		"-A PORTICO-C-B -j PORTICO-MARK-OFF-CLUSTER\n" +
		"-A PORTICO-C-B -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.1:80\n" +
		"-A PORTICO-C-B -p tcp -j DNAT --to-destination 10.0.0.3:80\n" +
		"COMMIT\n"
	if !ok || c.name != "PORTICO-C-B" || c.rules != 3 || c.input != want {
		t.Fatalf("pickChangeChain = %+v, %v; want PORTICO-C-B, 3 rules, input\n%s", c, ok, want)
	}
	if _, ok := pickChangeChain("*nat\n-A PREROUTING -j PORTICO-SERVICES\nCOMMIT\n"); ok {
		t.Error("pickChangeChain found a chain in a dump without a random pick")
	}
}
