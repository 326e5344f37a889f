package env

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// SetEndpointsPorts is SetEndpoints with other target ports: the Service port named name
// maps to targets[name] on every backend; the other ports map to their target port. It lets
// a Service reach a second server in the pods (an echo server) besides the traffic
// server.
func (e *Env) SetEndpointsPorts(ctx context.Context, svc *corev1.Service, backends []Backend, targets map[string]int32) error {
	for _, fam := range serviceFamilies(svc) {
		s := e.slice(svc, fam, backends)
		for i := range s.Ports {
			if p, ok := targets[*s.Ports[i].Name]; ok {
				s.Ports[i].Port = ptr(p)
			}
		}
		if err := e.applySlice(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
