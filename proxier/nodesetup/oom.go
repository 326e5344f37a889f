package nodesetup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// oomScoreAdjPath is this process's oom_score_adj under the root.
const oomScoreAdjPath = "proc/self/oom_score_adj"

// oomRetry is how long SetOOMScoreAdj waits before its second and last attempt.
const oomRetry = 100 * time.Millisecond

// SetOOMScoreAdj writes value to this process's oom_score_adj (oomScoreAdj), trying twice
// as kube-proxy does. kube-proxy only logs a failure, and so should the caller: a
// container may not be allowed to lower it. A refusal (permission denied: the process
// lacks CAP_SYS_RESOURCE) is final: it is not tried again, which would only delay the
// start by oomRetry.
func (n *Node) SetOOMScoreAdj(ctx context.Context, value int) error {
	var err error
	for try := range 2 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("oomScoreAdj: setting /%s to %d: %w", oomScoreAdjPath, value, ctx.Err())
			case <-time.After(oomRetry):
			}
		}
		if err = n.writeInt(oomScoreAdjPath, value); err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("oomScoreAdj: setting /%s to %d: %w", oomScoreAdjPath, value, err)
	}
	return nil
}
