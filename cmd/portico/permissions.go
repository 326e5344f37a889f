package main

import (
	"context"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/proxier/health"
	"github.com/portico-dev/portico/proxier/kubeapi"
)

// permissionCheckEvery is how often portico asks the API server again while it lacks a
// permission it needs: a role fixed by an administrator makes the pod Ready again within
// this.
const permissionCheckEvery = 10 * time.Second

// firstCheckRetry is how soon a first check that got no answer is tried again.
const firstCheckRetry = time.Second

// watchPermissions checks portico's API permissions at start, and again every
// permissionCheckEvery while one is missing, until all are granted or ctx ends: each
// missing one is logged by name when the set changes, and /healthz fails while any is
// missing, and until the first check answers (health.WithPermissionCheck). A check that fails (the API server unreachable) changes
// nothing; an authorizer that refuses access reviews ends the checks, failing nothing.
func watchPermissions(ctx context.Context, cfg *config.Config, ph *health.ProxyHealth) {
	logger := klog.FromContext(ctx)
	rc, err := apiConfig(cfg)
	if err == nil {
		rc.UserAgent = "portico/" + version
	}
	var checker *kubeapi.PermissionChecker
	if err == nil {
		checker, err = kubeapi.NewPermissionChecker(rc)
	}
	if err != nil {
		logger.Error(err, "Cannot check portico's API permissions")
		ph.SetMissingPermissions(nil)
		return
	}
	var last []string
	known := false
	for {
		missing, err := checker.Missing(ctx)
		switch {
		case err == nil:
			last, known = reportPermissions(logger, ph, last, names(missing)), true
			if len(last) == 0 {
				// All granted: stop asking. Every node asking 8 reviews every 10 s would
				// be thousands of requests a second on a large cluster; a permission
				// taken away later shows in client-go's logged list/watch errors.
				return
			}
		case apierrors.IsForbidden(err):
			// An authorizer that refuses access reviews: nothing can be checked, and that
			// must not keep the pod from being Ready.
			logger.Error(err, "Cannot review portico's API permissions; not checking them")
			ph.SetMissingPermissions(nil)
			return
		case ctx.Err() == nil:
			logger.V(2).Info("Checking portico's API permissions failed; trying again", "err", err)
		}
		wait := permissionCheckEvery
		if !known {
			wait = firstCheckRetry // readiness waits for the first answer
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// reportPermissions logs a change of the missing permissions and records them in ph; it
// returns them.
func reportPermissions(logger klog.Logger, ph *health.ProxyHealth, last, missing []string) []string {
	switch {
	case slices.Equal(last, missing):
	case len(missing) > 0:
		logger.Error(nil, "portico lacks API permissions it needs; it is not Ready until its ClusterRole grants them (deploy/base/rbac.yaml)",
			"missing", missing)
	default:
		logger.Info("portico has every API permission it needs", "missingBefore", last)
	}
	ph.SetMissingPermissions(missing)
	return missing
}

// names returns the permissions' names.
func names(perms []kubeapi.Permission) []string {
	var out []string
	for _, p := range perms {
		out = append(out, p.String())
	}
	return out
}
