package nftables

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// errChunkFailed stops the rendering of a cold load once one of its transactions failed.
var errChunkFailed = errors.New("an earlier transaction of the cold load failed")

// coldLoad writes the table when the kernel does not hold it yet (a new node, a reboot, a
// cleanup). Nothing is there to protect, so instead of one transaction that holds
// everything it sends a series of bounded ones: the skeleton with the first Service
// ports, then the next ports, each transaction complete for the ports it holds. nft then
// needs memory for one chunk only, the next chunk is rendered while nft loads this one,
// and only a chunk's objects and text exist at a time. Any failure forgets the mirror:
// the next sync is full and, the table now existing, one atomic transaction.
//
// The transactions run on the calling goroutine, which may be bound to a network
// namespace (tests); a helper goroutine only renders.
func (fs *familyState) coldLoad(ctx context.Context, t *model.Table, mark uint32, observe func(int)) error {
	jobs := make(chan func() error, 1)
	failed := make(chan struct{})
	rendered := make(chan error, 1)
	go func() {
		rendered <- fs.renderCold(ctx, t, mark, jobs, failed, observe)
		close(jobs)
	}()
	err := runJobs(jobs, failed)
	if renderErr := <-rendered; err == nil {
		err = renderErr
	}
	if err != nil {
		fs.reset()
		return fmt.Errorf("loading table %s into an empty kernel: %w", tableName, err)
	}
	fs.committed()
	return nil
}

// runJobs runs the transactions in order until one fails; it then closes failed, skips
// the rest and returns the error.
func runJobs(jobs <-chan func() error, failed chan<- struct{}) error {
	var err error
	for j := range jobs {
		if err != nil {
			continue
		}
		if err = j(); err != nil {
			close(failed)
		}
	}
	return err
}

// renderCold renders the table chunk by chunk and hands each chunk to jobs. With nft
// run directly (fs.batched), a chunk is split three ways (coldSplit): nft commits its
// chains, rules and shared elements; then its endpoint-map elements go in over netlink;
// its dispatch elements go with the next chunk's nft transaction (the last chunk's in one
// more). nft parses and holds much less (the endpoint elements are ten of every thirteen
// elements at ten endpoints per Service), the kernel binds each endpoint map while it is
// still empty (binding walks the elements), and no packet is dispatched to a chain before
// its endpoints are in the maps.
func (fs *familyState) renderCold(ctx context.Context, t *model.Table, mark uint32, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	var split coldSplit
	err := fs.renderFull(t, mark, existingObjects{}, chunkOps(t, true), func(w *txWriter) error {
		if !fs.batched {
			return fs.sendChunk(ctx, w, nil, jobs, failed, observe)
		}
		return fs.sendChunk(ctx, w, split.take(w), jobs, failed, observe)
	})
	if err == nil && len(split.held) > 0 {
		err = fs.sendChunk(ctx, &txWriter{elAdd: split.held}, nil, jobs, failed, observe)
	}
	return err
}

// coldSplit splits the chunks of a cold load (renderCold).
type coldSplit struct {
	// held are the dispatch elements of the chunk before.
	held []knftables.Object
}

// take leaves in w what its nft transaction holds (its own objects and shared elements,
// and the dispatch elements held from the chunk before) and returns the endpoint-map
// elements that follow it over netlink; it holds w's own dispatch elements back.
func (c *coldSplit) take(w *txWriter) []epOp {
	var keep, dispatch []knftables.Object
	for _, o := range w.elAdd {
		if e, ok := o.(*knftables.Element); ok && (e.Map == mapServiceIPs || e.Map == mapServiceNodePorts) {
			dispatch = append(dispatch, o)
		} else {
			keep = append(keep, o)
		}
	}
	w.elAdd = append(keep, c.held...)
	c.held = dispatch
	ep := w.epAdd
	w.epAdd = nil
	return ep
}

// sendChunk turns w, then the endpoint elements ep over netlink, into a job and queues it
// (waiting while the previous one runs).
func (fs *familyState) sendChunk(ctx context.Context, w *txWriter, ep []epOp, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	n := w.size() + len(ep)
	if observe != nil {
		observe(n)
	}
	run, f := fs.job(ctx, w), fs.r.f
	job := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := run(); err != nil {
			return fmt.Errorf("transaction of %d operations: %w", n, err)
		}
		if len(ep) > 0 {
			if err := execEndpointOps(ctx, f, nil, ep); err != nil {
				return fmt.Errorf("endpoint elements of a transaction of %d operations: %w", n, err)
			}
		}
		return nil
	}
	select {
	case jobs <- job:
		return nil
	case <-failed:
		return errChunkFailed
	case <-ctx.Done():
		return ctx.Err()
	}
}
