package nftables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/portico-dev/portico/model"
)

// fullRewrite rewrites a table the kernel already holds in one atomic transaction: every
// shared set and map is flushed and refilled and every chain rewritten, so that
// connections (held by conntrack) and the rules of other tables are not disturbed, and
// what an earlier run left that the model no longer needs is emptied (and deleted by the
// next transaction). Batched, the pieces are streamed into nft's standard input as they
// are rendered, so that portico never holds the whole transaction; nft commits only at
// the end of its input.
func (fs *familyState) fullRewrite(ctx context.Context, t *model.Table, mark uint32, existing existingObjects, observe func(int)) error {
	ops := 0
	var err error
	if fs.batched {
		err = streamNFT(ctx, func(write func(*bytes.Buffer) error) error {
			return fs.renderFull(t, mark, existing, chunkOps(t, false), func(w *txWriter) error {
				ops += w.size()
				return write(fs.text(w))
			})
		})
	} else {
		tx := fs.nft.NewTransaction()
		err = fs.renderFull(t, mark, existing, chunkOps(t, false), func(w *txWriter) error {
			ops += w.size()
			w.addTo(tx)
			return nil
		})
		if err == nil {
			err = fs.nft.Run(ctx, tx)
		}
	}
	if observe != nil {
		observe(ops)
	}
	if err != nil {
		fs.reset()
		return fmt.Errorf("nftables transaction of %d operations: %w", ops, err)
	}
	fs.committed()
	return nil
}

// streamNFT runs one `nft -f -` transaction whose text produce writes piece by piece; a
// variable so that tests and benchmarks can replace nft.
var streamNFT = runNFTStream

// runNFTStream starts nft, lets produce write the transaction into its standard input,
// then closes it and waits. If produce fails, nft is killed before it reads the end of
// its input, so it commits nothing.
func runNFTStream(ctx context.Context, produce func(write func(*bytes.Buffer) error) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("nft -f: %w", err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nft -f: %w", err)
	}
	var writeErr error
	perr := produce(func(b *bytes.Buffer) error {
		_, writeErr = b.WriteTo(stdin)
		return writeErr
	})
	if perr != nil && !errors.Is(perr, writeErr) {
		cancel() // before closing stdin: nft must not see the end of its input
		_ = cmd.Wait()
		return perr
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		// A write error means nft stopped reading: its own message says why.
		return fmt.Errorf("nft -f: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return perr
}
