package nftables

import (
	"hash/fnv"
	"math/bits"
)

// numBuckets is the number of endpoint maps per table. Every DNAT rule binds one of them,
// and the kernel walks a map's elements each time a rule binds it, so spreading the
// endpoints over several maps keeps a cold load linear; see README.md.
const numBuckets = 64

// minBlock is the smallest block of slots given to an endpoint group.
const minBlock = 4

// block is a run of slots in an endpoint map: keys start..start+size-1 of map bucket.
type block struct {
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

// bucketFor spreads groups over the endpoint maps by the name of their chain.
func bucketFor(chain string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chain))
	return int(h.Sum32() % numBuckets)
}

// fits reports whether b can hold n endpoints without moving.
func (b block) fits(n int) bool { return b.size == sizeFor(n) }

// alloc returns a block for n endpoints of the group whose chain is named chain.
func (a *slotAllocator) alloc(chain string, n int) block {
	size := sizeFor(n)
	b := block{bucket: bucketFor(chain), size: size}
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
