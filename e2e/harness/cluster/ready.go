package cluster

import "context"

// APIServerReady asks the apiserver's /readyz once and returns nil if it answers ok.
// StartAPIServer polls it every 200 ms; a test that measures from the moment the
// apiserver is ready again polls it faster itself.
func (c *Cluster) APIServerReady(ctx context.Context) error { return c.apiServerReady(ctx) }
