package nftables

import (
	"context"
	"errors"
	"fmt"

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

// renderCold renders the table chunk by chunk and hands each chunk to jobs.
func (fs *familyState) renderCold(ctx context.Context, t *model.Table, mark uint32, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	return fs.renderFull(t, mark, existingObjects{}, chunkOps(t, true), func(w *txWriter) error {
		return fs.sendChunk(ctx, w, jobs, failed, observe)
	})
}

// sendChunk turns w into a job and queues it (waiting while the previous one runs).
func (fs *familyState) sendChunk(ctx context.Context, w *txWriter, jobs chan<- func() error, failed <-chan struct{}, observe func(int)) error {
	n := w.size()
	if observe != nil {
		observe(n)
	}
	run := fs.job(ctx, w)
	job := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := run(); err != nil {
			return fmt.Errorf("transaction of %d operations: %w", n, err)
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
