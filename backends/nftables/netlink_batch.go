package nftables

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nlBatch builds one nf_tables batch for portico's table of one family: chains, rules and
// set elements, encoded as nft would send them. It is what a cold load's piece sends
// (coldPiece). Only the last message asks for an acknowledgement: the kernel answers an
// error for any message it refuses, and it commits all of the batch or nothing, so one
// acknowledgement tells that the batch is in (acknowledging each message, as
// github.com/google/nftables does, would make the kernel queue tens of thousands of
// answers, and its rules also ask the kernel to echo each one back).
type nlBatch struct {
	family byte // NFPROTO_IPV4 or NFPROTO_IPV6
	msgs   []netlink.Message
	bytes  int
}

// newBatch starts a batch for the table of family f.
func newBatch(f fam) *nlBatch {
	b := &nlBatch{family: unix.NFPROTO_IPV4}
	if f.ip == "ip6" {
		b.family = unix.NFPROTO_IPV6
	}
	return b
}

// add appends one message of type typ (an NFT_MSG_*) made of attrs.
func (b *nlBatch) add(typ uint16, flags netlink.HeaderFlags, attrs []netlink.Attribute) error {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return fmt.Errorf("encoding a netlink message: %w", err)
	}
	b.msgs = append(b.msgs, netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
			Flags: netlink.Request | flags,
		},
		Data: append([]byte{b.family, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	b.bytes += 20 + len(data)
	return nil
}

// cstr is s as the kernel reads a name: NUL-terminated.
func cstr(s string) []byte { return append([]byte(s), 0) }

// addChain adds a regular (hookless) chain.
func (b *nlBatch) addChain(name string) error {
	return b.add(unix.NFT_MSG_NEWCHAIN, netlink.Create, []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(tableName)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstr(name)},
	})
}

// addRule appends a rule of exprs, with a comment unless it is "", to the end of chain.
func (b *nlBatch) addRule(chain string, exprs []expr.Any, comment string) error {
	list := make([]netlink.Attribute, len(exprs))
	for i, e := range exprs {
		data, err := expr.Marshal(b.family, e)
		if err != nil {
			return fmt.Errorf("encoding a rule of chain %s: %w", chain, err)
		}
		list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
	}
	exprData, err := netlink.MarshalAttributes(list)
	if err != nil {
		return fmt.Errorf("encoding a rule of chain %s: %w", chain, err)
	}
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstr(tableName)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstr(chain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: exprData},
	}
	if comment != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_RULE_USERDATA,
			Data: userdata.AppendString(nil, userdata.TypeComment, comment)})
	}
	return b.add(unix.NFT_MSG_NEWRULE, netlink.Create|unix.NLM_F_APPEND, attrs)
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

// encode returns the element's attributes as the kernel reads them.
func (e nlElem) encode() ([]byte, error) {
	key, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: e.key}})
	if err != nil {
		return nil, err
	}
	attrs := []netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: key}}
	var data []byte
	switch {
	case e.gotoChain != "":
		verdict, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_VERDICT_CODE, Data: binary.BigEndian.AppendUint32(nil, uint32(verdictGoto))},
			{Type: unix.NFTA_VERDICT_CHAIN, Data: cstr(e.gotoChain)},
		})
		if err == nil {
			data, err = netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_DATA_VERDICT, Data: verdict}})
		}
		if err != nil {
			return nil, err
		}
	case e.value != nil:
		if data, err = netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: e.value}}); err != nil {
			return nil, err
		}
	}
	if data != nil {
		attrs = append(attrs, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_DATA, Data: data})
	}
	if e.comment != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_SET_ELEM_USERDATA,
			Data: userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.comment)})
	}
	return netlink.MarshalAttributes(attrs)
}

// maxElementBytes bounds the encoded elements of one message: their list is one
// attribute, whose length field has 16 bits (see maxElementsPerMessage).
const maxElementBytes = 48 << 10

// addElements adds elems to the set or map named set, in as many messages as their size
// needs.
func (b *nlBatch) addElements(set string, elems []nlElem) error {
	var list []netlink.Attribute
	size := 0
	flush := func() error {
		if len(list) == 0 {
			return nil
		}
		data, err := netlink.MarshalAttributes(list)
		if err != nil {
			return fmt.Errorf("encoding elements of %s: %w", set, err)
		}
		list, size = list[:0], 0
		return b.add(unix.NFT_MSG_NEWSETELEM, netlink.Create, []netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstr(tableName)},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: cstr(set)},
			{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: data},
		})
	}
	for _, e := range elems {
		data, err := e.encode()
		if err != nil {
			return fmt.Errorf("encoding an element of %s: %w", set, err)
		}
		if size+len(data)+4 > maxElementBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data})
		size += len(data) + 4
	}
	return flush()
}

// execBatch sends a batch; a variable so that tests can watch or fail it.
var execBatch = runBatch

// runBatch sends b to the kernel in one message of a netlink socket opened in the calling
// thread's network namespace (as `nft` would run in it) and waits for its answer: the
// acknowledgement of its last message, or the error of the first message the kernel
// refused (the kernel then changes nothing).
func runBatch(ctx context.Context, b *nlBatch) error {
	if len(b.msgs) == 0 {
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
	if err := forceSendBuffer(conn, b.bytes+batchOverhead); err != nil {
		return fmt.Errorf("nf_tables netlink: %w", err)
	}
	b.msgs[len(b.msgs)-1].Header.Flags |= netlink.Acknowledge
	sent, err := conn.SendMessages(b.framed())
	if err != nil {
		return fmt.Errorf("nf_tables netlink: sending a batch of %d messages: %w", len(b.msgs), err)
	}
	last := sent[len(sent)-2].Header.Sequence
	for {
		answers, err := conn.Receive()
		if err != nil {
			return fmt.Errorf("nf_tables netlink: a batch of %d messages: %w", len(b.msgs), err)
		}
		for _, m := range answers {
			if m.Header.Type == netlink.Error && m.Header.Sequence == last {
				return nil
			}
		}
	}
}

// framed returns the batch's messages between the batch's begin and end messages.
func (b *nlBatch) framed() []netlink.Message {
	marker := func(typ uint16) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
		}
	}
	out := make([]netlink.Message, 0, len(b.msgs)+2)
	out = append(out, marker(unix.NFNL_MSG_BATCH_BEGIN))
	out = append(out, b.msgs...)
	return append(out, marker(unix.NFNL_MSG_BATCH_END))
}
