package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nlBatch builds one nf_tables batch for portico's table of one family: chains, rules and
// set elements, encoded as nft would send them. It is what a cold load's piece and a
// partial sync's endpoint changes send. Only the last message asks for an
// acknowledgement: the kernel answers an error for any message it refuses, and it commits
// all of the batch or nothing, so one acknowledgement tells that the batch is in
// (acknowledging each message, as github.com/google/nftables does, would make the kernel
// queue tens of thousands of answers, and its rules also ask the kernel to echo each one
// back). The messages are written straight into one buffer, which is sent as it is: a
// cold load of 50,000 Services encodes 550,000 elements, and building each message and
// attribute as its own byte slice, then copying them into the socket's buffer, allocated
// several times the batch.
type nlBatch struct {
	family byte   // NFPROTO_IPV4 or NFPROTO_IPV6
	buf    []byte // the complete messages, in order
	msgs   int
	msg    int // the offset of the message being written (or of the last one)
}

// newBatch starts a batch for the table of family f.
func newBatch(f fam) *nlBatch {
	b := &nlBatch{family: unix.NFPROTO_IPV4}
	if f.ip == "ip6" {
		b.family = unix.NFPROTO_IPV6
	}
	return b
}

// size returns the encoded size of the batch's messages.
func (b *nlBatch) size() int { return len(b.buf) }

// begin starts a message of type typ (an NFT_MSG_*): its header (the length is written by
// end; the sequence number is the message's index from 1) and struct nfgenmsg.
func (b *nlBatch) begin(typ uint16, flags netlink.HeaderFlags) {
	b.msg = len(b.buf)
	b.msgs++
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, unix.NFNL_SUBSYS_NFTABLES<<8|typ)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(netlink.Request|flags))
	b.buf = binary.NativeEndian.AppendUint32(b.buf, uint32(b.msgs))
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0) // port id: the kernel's
	b.buf = append(b.buf, b.family, unix.NFNETLINK_V0, 0, 0)
}

// end writes the length of the message begun last.
func (b *nlBatch) end() {
	binary.NativeEndian.PutUint32(b.buf[b.msg:], uint32(len(b.buf)-b.msg))
}

// attr appends an attribute holding data, padded to 4 bytes.
func (b *nlBatch) attr(typ uint16, data []byte) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(unix.NLA_HDRLEN+len(data)))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, data...)
	b.pad()
}

// attrString appends an attribute holding s as the kernel reads a name: NUL-terminated.
func (b *nlBatch) attrString(typ uint16, s string) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(unix.NLA_HDRLEN+len(s)+1))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, s...)
	b.buf = append(b.buf, 0)
	b.pad()
}

// attrComment appends an attribute of type typ holding comment as userdata of type ud.
func (b *nlBatch) attrComment(typ uint16, ud userdata.Type, comment string) {
	start := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = userdata.AppendString(b.buf, ud, comment)
	binary.NativeEndian.PutUint16(b.buf[start:], uint16(len(b.buf)-start))
	b.pad()
}

// pad aligns the buffer to 4 bytes.
func (b *nlBatch) pad() {
	for len(b.buf)%unix.NLA_ALIGNTO != 0 {
		b.buf = append(b.buf, 0)
	}
}

// nest starts a nested attribute and returns its offset, for unnest.
func (b *nlBatch) nest(typ uint16) int {
	start := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ|unix.NLA_F_NESTED)
	return start
}

// unnest writes the length of the nested attribute at start.
func (b *nlBatch) unnest(start int) {
	binary.NativeEndian.PutUint16(b.buf[start:], uint16(len(b.buf)-start))
}

// errAttrTooLong reports an attribute whose length does not fit its 16-bit field.
var errAttrTooLong = errors.New("netlink attribute longer than 64 KiB")

// addChain adds a regular (hookless) chain.
func (b *nlBatch) addChain(name string) error {
	b.begin(unix.NFT_MSG_NEWCHAIN, netlink.Create)
	b.attrString(unix.NFTA_CHAIN_TABLE, tableName)
	b.attrString(unix.NFTA_CHAIN_NAME, name)
	b.end()
	return nil
}

// addRule appends a rule of exprs, with a comment unless it is "", to the end of chain.
func (b *nlBatch) addRule(chain string, exprs []expr.Any, comment string) error {
	b.begin(unix.NFT_MSG_NEWRULE, netlink.Create|unix.NLM_F_APPEND)
	b.attrString(unix.NFTA_RULE_TABLE, tableName)
	b.attrString(unix.NFTA_RULE_CHAIN, chain)
	list := b.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		data, err := expr.Marshal(b.family, e)
		if err != nil {
			return fmt.Errorf("encoding a rule of chain %s: %w", chain, err)
		}
		b.attr(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, data)
	}
	if len(b.buf)-list > 0xffff {
		return fmt.Errorf("encoding a rule of chain %s: %w", chain, errAttrTooLong)
	}
	b.unnest(list)
	if comment != "" {
		b.attrComment(unix.NFTA_RULE_USERDATA, userdata.TypeComment, comment)
	}
	b.end()
	return nil
}

// verdictGoto is the kernel's code of a goto verdict (negative: a variable, to be
// written as its 32-bit pattern).
var verdictGoto int32 = unix.NFT_GOTO

// nlElem is one set or map element: a key, and a value or a verdict (goto a chain) for
// a map, and a comment ("" for none).
type nlElem struct {
	key, value []byte
	gotoChain  string
	comment    string
}

// writeElem appends e as one element of an element list: its key, its value or verdict
// and its comment, as the kernel reads them.
func (b *nlBatch) writeElem(e nlElem) {
	el := b.nest(unix.NFTA_LIST_ELEM)
	key := b.nest(unix.NFTA_SET_ELEM_KEY)
	b.attr(unix.NFTA_DATA_VALUE, e.key)
	b.unnest(key)
	switch {
	case e.gotoChain != "":
		data := b.nest(unix.NFTA_SET_ELEM_DATA)
		verdict := b.nest(unix.NFTA_DATA_VERDICT)
		b.attr(unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, uint32(verdictGoto)))
		b.attrString(unix.NFTA_VERDICT_CHAIN, e.gotoChain)
		b.unnest(verdict)
		b.unnest(data)
	case e.value != nil:
		data := b.nest(unix.NFTA_SET_ELEM_DATA)
		b.attr(unix.NFTA_DATA_VALUE, e.value)
		b.unnest(data)
	}
	if e.comment != "" {
		b.attrComment(unix.NFTA_SET_ELEM_USERDATA, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.comment)
	}
	b.unnest(el)
}

// maxElementBytes bounds the encoded elements of one message: their list is one
// attribute, whose length field has 16 bits (beyond 64 KiB the length wraps and the
// kernel misreads the message: it answered ENOENT to 4,096-element messages).
const maxElementBytes = 48 << 10

// addElements adds elems to the set or map named set, in as many messages as their size
// needs.
func (b *nlBatch) addElements(set string, elems []nlElem) error {
	return b.elements(unix.NFT_MSG_NEWSETELEM, netlink.Create, set, len(elems), func(i int) { b.writeElem(elems[i]) })
}

// addEndpoints adds the endpoint-map elements of ops, all of one map, to it.
func (b *nlBatch) addEndpoints(f fam, ops []epOp) error {
	if len(ops) == 0 {
		return nil
	}
	return b.elements(unix.NFT_MSG_NEWSETELEM, netlink.Create, ops[0].m, len(ops), func(i int) { b.writeEndpoint(f, ops[i], true) })
}

// deleteEndpoints deletes the endpoint-map elements of ops, all of one map.
func (b *nlBatch) deleteEndpoints(f fam, ops []epOp) error {
	if len(ops) == 0 {
		return nil
	}
	return b.elements(unix.NFT_MSG_DELSETELEM, 0, ops[0].m, len(ops), func(i int) { b.writeEndpoint(f, ops[i], false) })
}

// writeEndpoint appends the element of o (endpointKey, and endpointValue if withValue)
// without allocating: a cold load writes one per endpoint.
func (b *nlBatch) writeEndpoint(f fam, o epOp, withValue bool) {
	var scratch [24]byte
	el := b.nest(unix.NFTA_LIST_ELEM)
	key := b.nest(unix.NFTA_SET_ELEM_KEY)
	b.attr(unix.NFTA_DATA_VALUE, endpointKey(scratch[:0], o))
	b.unnest(key)
	if withValue {
		data := b.nest(unix.NFTA_SET_ELEM_DATA)
		b.attr(unix.NFTA_DATA_VALUE, endpointValue(scratch[:0], f, o))
		b.unnest(data)
	}
	b.unnest(el)
}

// elements writes n elements (write(i) appends the i-th) into messages of type typ for
// set, starting a new message when one's element list would outgrow maxElementBytes.
func (b *nlBatch) elements(typ uint16, flags netlink.HeaderFlags, set string, n int, write func(i int)) error {
	list := 0 // the offset of the open message's element list
	open := func() {
		b.begin(typ, flags)
		b.attrString(unix.NFTA_SET_ELEM_LIST_TABLE, tableName)
		b.attrString(unix.NFTA_SET_ELEM_LIST_SET, set)
		list = b.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	}
	closeMsg := func() {
		b.unnest(list)
		b.end()
	}
	for i := range n {
		if i == 0 {
			open()
		}
		start := len(b.buf)
		write(i)
		if len(b.buf)-start > maxElementBytes {
			return fmt.Errorf("encoding an element of %s: %w", set, errAttrTooLong)
		}
		if len(b.buf)-list > maxElementBytes && start > list+unix.NLA_HDRLEN {
			// The element goes to the next message.
			el := append([]byte(nil), b.buf[start:]...)
			b.buf = b.buf[:start]
			closeMsg()
			open()
			b.buf = append(b.buf, el...)
		}
	}
	if n > 0 {
		closeMsg()
	}
	return nil
}

// execBatch sends a batch; a variable so that tests can watch or fail it.
var execBatch = runBatch

// runBatch sends b to the kernel in one message of a netlink socket opened in the calling
// thread's network namespace (as `nft` would run in it) and waits for its answer: the
// acknowledgement of its last message, or the error of the first message the kernel
// refused (the kernel then changes nothing).
func runBatch(ctx context.Context, b *nlBatch) error {
	if b.msgs == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("nf_tables netlink: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(netlinkTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("nf_tables netlink: %w", err)
	}
	if err := forceSendBuffer(conn, len(b.buf)+batchOverhead); err != nil {
		return fmt.Errorf("nf_tables netlink: %w", err)
	}
	if err := b.send(conn); err != nil {
		return fmt.Errorf("nf_tables netlink: sending a batch of %d messages: %w", b.msgs, err)
	}
	for {
		answers, err := conn.Receive()
		if err != nil {
			return fmt.Errorf("nf_tables netlink: a batch of %d messages: %w", b.msgs, err)
		}
		for _, m := range answers {
			if m.Header.Type == netlink.Error && m.Header.Sequence == uint32(b.msgs) {
				return nil
			}
		}
	}
}

// send writes the batch, between its begin and end messages, in one sendmsg call, the
// last message asking for the acknowledgement.
func (b *nlBatch) send(conn *netlink.Conn) error {
	flags := binary.NativeEndian.Uint16(b.buf[b.msg+6:])
	binary.NativeEndian.PutUint16(b.buf[b.msg+6:], flags|uint16(netlink.Acknowledge))
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	iov := [][]byte{batchMarker(unix.NFNL_MSG_BATCH_BEGIN, 0), b.buf, batchMarker(unix.NFNL_MSG_BATCH_END, uint32(b.msgs+1))}
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		_, serr = unix.SendmsgBuffers(int(fd), iov, nil, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// batchMarker returns the message that begins or ends an nf_tables batch.
func batchMarker(typ uint16, seq uint32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, unix.NLMSG_HDRLEN+4)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, uint16(netlink.Request))
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
}
