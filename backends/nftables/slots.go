package nftables

import (
	"hash/fnv"
	"math/bits"

	"github.com/portico-dev/portico/model"
)

// bucketsPerProtocol is the number of endpoint maps per table and protocol. Every DNAT
// rule binds one of them, and the kernel walks a map's elements each time a rule binds it,
// so spreading the endpoints over several maps keeps a cold load linear; see README.md.
// (The maps are per protocol because nft 1.0.x cannot use a map typed "th dport" that it
// reads back from the kernel.)
var bucketsPerProtocol = map[model.Protocol]int{model.TCP: 64, model.UDP: 8, model.SCTP: 2}

// minBlock is the smallest block of slots given to an endpoint group.
const minBlock = 4

// block is a run of slots in an endpoint map: keys start..start+size-1 of the map of
// protocol proto and bucket.
type block struct {
	proto  model.Protocol
	bucket int
	start  uint32
	size   uint32
}

// slotAllocator hands out blocks of endpoint-map keys. Sizes are powers of two so that a
// group keeps its block while its endpoint count stays in the same size class; freed
// blocks are reused per size class. Keys are unique across all buckets.
type slotAllocator struct {
	next uint32
	free map[uint32][]uint32 // size → free starts
}

func newSlotAllocator() *slotAllocator {
	return &slotAllocator{free: map[uint32][]uint32{}}
}

// sizeFor returns the block size for n endpoints.
func sizeFor(n int) uint32 {
	if n <= minBlock {
		return minBlock
	}
	return 1 << bits.Len32(uint32(n-1))
}

// bucketFor spreads groups over the endpoint maps of their protocol by chain name.
func bucketFor(chain string, p model.Protocol) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chain))
	return int(h.Sum32() % uint32(bucketsPerProtocol[p]))
}

// fits reports whether b can hold n endpoints without moving.
func (b block) fits(n int) bool { return b.size == sizeFor(n) }

// alloc returns a block for n endpoints of protocol p of the group whose chain is named
// chain.
func (a *slotAllocator) alloc(chain string, p model.Protocol, n int) block {
	size := sizeFor(n)
	b := block{proto: p, bucket: bucketFor(chain, p), size: size}
	if starts := a.free[size]; len(starts) > 0 {
		b.start = starts[len(starts)-1]
		a.free[size] = starts[:len(starts)-1]
		return b
	}
	b.start = a.next
	a.next += size
	return b
}

// release returns a block to the allocator.
func (a *slotAllocator) release(b block) {
	a.free[b.size] = append(a.free[b.size], b.start)
}
