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
	ops, err := fs.stream(ctx, false, func(emit func(*txWriter) error) error {
		return fs.renderFull(t, mark, existing, chunkOps(t, false), emit)
	})
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

// stream runs one transaction, or with check only asks whether the kernel would accept it
// (nft --check: nft and the kernel validate everything, then nothing is committed), whose
// pieces render hands to its emit function. Batched, the pieces are streamed into nft's
// standard input as they are rendered; otherwise they are gathered into one knftables
// transaction. It returns the number of operations.
func (fs *familyState) stream(ctx context.Context, check bool, render func(emit func(*txWriter) error) error) (int, error) {
	ops := 0
	if fs.batched {
		run := streamNFT
		if check {
			run = checkNFT
		}
		err := run(ctx, func(write func(*bytes.Buffer) error) error {
			return render(func(w *txWriter) error {
				ops += w.size()
				return write(fs.text(w))
			})
		})
		return ops, err
	}
	tx := fs.nft.NewTransaction()
	err := render(func(w *txWriter) error {
		ops += w.size()
		w.addTo(tx)
		return nil
	})
	switch {
	case err != nil:
		return ops, err
	case check:
		return ops, fs.nft.Check(ctx, tx)
	}
	return ops, fs.nft.Run(ctx, tx)
}

// streamNFT runs one `nft -f -` transaction whose text produce writes piece by piece; a
// variable so that tests and benchmarks can replace nft.
var streamNFT = runNFTStream

// checkNFT is streamNFT with `nft --check -f -`: nothing is committed.
var checkNFT = runNFTCheck

// runNFTStream starts nft, lets produce write the transaction into its standard input,
// then closes it and waits. If produce fails, nft is killed before it reads the end of
// its input, so it commits nothing.
func runNFTStream(ctx context.Context, produce func(write func(*bytes.Buffer) error) error) error {
	return runNFTArgs(ctx, produce, "-f", "-")
}

// runNFTCheck is runNFTStream with nft's check mode.
func runNFTCheck(ctx context.Context, produce func(write func(*bytes.Buffer) error) error) error {
	return runNFTArgs(ctx, produce, "--check", "-f", "-")
}

// runNFTArgs runs nft with args, produce writing its standard input (see runNFTStream).
func runNFTArgs(ctx context.Context, produce func(write func(*bytes.Buffer) error) error, args ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("nft %s: %w", strings.Join(args, " "), err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nft %s: %w", strings.Join(args, " "), err)
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
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return perr
}
