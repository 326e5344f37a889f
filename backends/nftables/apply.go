package nftables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// maxElementsPerCommand bounds the elements written in one `add element` command.
const maxElementsPerCommand = 4096

// apply runs the transaction w describes. Batched, it writes the transaction text itself
// and runs `nft -f -`: knftables would write one command per element, and at 10,000
// Services × 10 endpoints (120,000 elements) that costs nft and the kernel about a third
// more time and 60 % more memory than one command per set. Otherwise (knftables.Fake in
// tests) it runs the same operations as a knftables transaction.
func (fs *familyState) apply(ctx context.Context, w *txWriter) error {
	if !fs.batched {
		return fs.nft.Run(ctx, w.transaction(fs.nft))
	}
	var b bytes.Buffer
	head := fs.nft.NewTransaction()
	for _, o := range append(w.setup, w.objects...) {
		addOrFlush(head, o)
	}
	b.WriteString(head.String())
	writeEndpointOps(&b, "delete", fs.r.f, w.epDel)
	writeElements(&b, "delete", fs.r.f, w.elDel)
	writeEndpointOps(&b, "add", fs.r.f, w.epAdd)
	writeElements(&b, "add", fs.r.f, w.elAdd)
	tail := fs.nft.NewTransaction()
	for _, o := range w.flushes {
		tail.Flush(o)
	}
	for _, o := range w.deletes {
		tail.Delete(o)
	}
	b.WriteString(tail.String())
	return runNFT(ctx, &b)
}

// runNFT runs `nft -f -` with the transaction text on its standard input.
func runNFT(ctx context.Context, text *bytes.Buffer) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = text
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// writeElements writes element operations, one command per set (or per
// maxElementsPerCommand elements), sets in the order they first appear.
func writeElements(b *bytes.Buffer, verb string, f fam, ops []knftables.Object) {
	var order []string
	bySet := map[string][]*knftables.Element{}
	for _, o := range ops {
		e := o.(*knftables.Element)
		name := e.Set + e.Map
		if _, seen := bySet[name]; !seen {
			order = append(order, name)
		}
		bySet[name] = append(bySet[name], e)
	}
	for _, name := range order {
		elems := bySet[name]
		for start := 0; start < len(elems); start += maxElementsPerCommand {
			writeElementCommand(b, verb, f, name, elems[start:min(start+maxElementsPerCommand, len(elems))])
		}
	}
}

// writeEndpointOps writes endpoint-map element operations, grouped per map.
func writeEndpointOps(b *bytes.Buffer, verb string, f fam, ops []epOp) {
	var order []string
	byMap := map[string][]epOp{}
	for _, o := range ops {
		if _, seen := byMap[o.m]; !seen {
			order = append(order, o.m)
		}
		byMap[o.m] = append(byMap[o.m], o)
	}
	for _, m := range order {
		all := byMap[m]
		for start := 0; start < len(all); start += maxElementsPerCommand {
			fmt.Fprintf(b, "%s element %s %s %s { ", verb, f.ip, tableName, m)
			for i, o := range all[start:min(start+maxElementsPerCommand, len(all))] {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(strconv.FormatUint(uint64(o.slot), 10))
				if verb == "add" {
					fmt.Fprintf(b, " : %s . %d", o.ep.Addr(), o.ep.Port())
				}
			}
			b.WriteString(" }\n")
		}
	}
}

func writeElementCommand(b *bytes.Buffer, verb string, f fam, set string, elems []*knftables.Element) {
	fmt.Fprintf(b, "%s element %s %s %s { ", verb, f.ip, tableName, set)
	for i, e := range elems {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strings.Join(e.Key, " . "))
		if verb == "add" && e.Comment != nil {
			fmt.Fprintf(b, " comment %q", *e.Comment)
		}
		if verb == "add" && len(e.Value) > 0 {
			b.WriteString(" : " + strings.Join(e.Value, " . "))
		}
	}
	b.WriteString(" }\n")
}
