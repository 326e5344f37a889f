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
	return fs.job(ctx, w)()
}

// job prepares the transaction w describes and returns the function that runs it. The
// text (or knftables transaction) is built at once, so that w can be dropped while the
// job waits. A transaction of endpoint-map elements only goes over netlink (netlink.go).
func (fs *familyState) job(ctx context.Context, w *txWriter) func() error {
	if !fs.batched {
		tx := w.transaction(fs.nft)
		return func() error { return fs.nft.Run(ctx, tx) }
	}
	if w.endpointOpsOnly() {
		del, add, f := w.epDel, w.epAdd, fs.r.f
		return func() error { return execEndpointOps(ctx, f, del, add) }
	}
	text := fs.text(w)
	return func() error { return execNFT(ctx, text) }
}

// text writes the transaction w describes as `nft -f` input.
func (fs *familyState) text(w *txWriter) *bytes.Buffer {
	var b bytes.Buffer
	b.Grow(textSizeHint(w))
	fs.writeObjects(&b, w.setup)
	fs.writeObjects(&b, w.objects)
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
	return &b
}

// objectsPerChunk bounds the objects rendered by one knftables transaction: each renders
// into a buffer of its own, so smaller ones avoid copying megabytes as it grows.
const objectsPerChunk = 1024

// writeObjects renders objects (adds, or flushes for flushMarkers) as transaction text.
func (fs *familyState) writeObjects(b *bytes.Buffer, objs []knftables.Object) {
	for start := 0; start < len(objs); start += objectsPerChunk {
		tx := fs.nft.NewTransaction()
		for _, o := range objs[start:min(start+objectsPerChunk, len(objs))] {
			addOrFlush(tx, o)
		}
		b.WriteString(tx.String())
	}
}

// textSizeHint estimates the transaction text's size, to allocate its buffer once.
func textSizeHint(w *txWriter) int {
	return 100*(len(w.setup)+len(w.objects)+len(w.flushes)+len(w.deletes)) +
		120*(len(w.elAdd)+len(w.elDel)) + 32*(len(w.epAdd)+len(w.epDel))
}

// execNFT runs a transaction's text; a variable so that benchmarks can leave nft out.
var execNFT = runNFT

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

// writeEndpointOps writes endpoint-map element operations, one command per map (or per
// maxElementsPerCommand elements; groupByMap).
func writeEndpointOps(b *bytes.Buffer, verb string, f fam, ops []epOp) {
	for _, g := range groupByMap(ops, maxElementsPerCommand) {
		fmt.Fprintf(b, "%s element %s %s %s { ", verb, f.ip, tableName, g[0].m)
		for i, o := range g {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.FormatUint(uint64(o.slot), 10))
			if verb == "add" {
				b.WriteString(" : ")
				b.WriteString(o.ep.Addr().String())
				b.WriteString(" . ")
				b.WriteString(strconv.Itoa(int(o.ep.Port())))
			}
		}
		b.WriteString(" }\n")
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
