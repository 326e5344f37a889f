package proxier

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
)

// maxVerifyPeriod caps the default period of the rules check.
const maxVerifyPeriod = 10 * time.Second

// verifyPeriod returns how often the backend's rules are checked: Options.VerifyPeriod,
// or by default half the sync period, at most maxVerifyPeriod (10 s with kube-proxy's
// default syncPeriod of 30 s). Half the period leaves the repair sync the other half, so
// that rules someone removed are back within syncPeriod; the cap bounds the outage under
// long periods. A check costs the nftables backend under a millisecond whatever the
// number of Services (backends/nftables/README.md), so the cap is not a matter of cost.
// Zero or less (no sync period, or a negative VerifyPeriod) turns the check off.
func (p *Proxier) verifyPeriod() time.Duration {
	if p.opts.VerifyPeriod != 0 {
		return p.opts.VerifyPeriod
	}
	return min(p.opts.SyncPeriod/2, maxVerifyPeriod)
}

// startVerifying makes the runner check the backend's rules every verifyPeriod between
// syncs, when the backend implements backends.Verifier. The check runs in the runner's
// goroutine, so it never overlaps a sync and reads the sync's bookkeeping without locks.
func (p *Proxier) startVerifying(ctx context.Context) {
	v, ok := p.backend.(backends.Verifier)
	if !ok || p.verifyPeriod() <= 0 {
		return
	}
	klog.FromContext(ctx).V(2).Info("Checking the rules periodically", "period", p.verifyPeriod(), "backend", p.backend.Name())
	p.runner.setCheck(p.verifyPeriod(), func(ctx context.Context) bool { return p.verifyRules(ctx, v) })
}

// verifyRules asks v whether each family that had a successful sync, and no failed one
// since, still has its rules in the kernel. A family whose rules are missing is logged,
// counted, reported unhealthy until a sync repairs it, and marked for a full sync;
// verifyRules then reports true, for the runner to sync at once. An error that is not
// backends.ErrRulesMissing (the backend cannot tell) is logged only. When ctx is cancelled
// (the runner cancels a check when a sync is requested) it stops at once: a cancelled
// check is postponed, not an error.
func (p *Proxier) verifyRules(ctx context.Context, v backends.Verifier) bool {
	logger := klog.FromContext(ctx)
	repair := false
	for _, fam := range p.opts.Node.Families {
		if p.applied[fam] == nil || p.needFull[fam] {
			continue // never synced, or the next sync is full anyway
		}
		err := v.Verify(ctx, fam)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			logger.V(4).Info("Rules check cancelled; it runs again after the sync", "family", fam, "backend", p.backend.Name())
			return repair
		case errors.Is(err, backends.ErrRulesMissing):
			logger.Error(err, "The rules are missing from the kernel; repairing them with a full sync",
				"family", fam, "backend", p.backend.Name())
			p.opts.Recorder.IncRulesRepair(fam)
			p.opts.Health.RulesMissing(fam)
			p.needFull[fam] = true
			repair = true
		default:
			logger.Error(err, "Cannot verify the rules in the kernel; trying again later",
				"family", fam, "backend", p.backend.Name(), "retryIn", p.verifyPeriod())
		}
	}
	return repair
}
