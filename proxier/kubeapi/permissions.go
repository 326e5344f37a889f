package kubeapi

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
)

// reviewScheme holds authorization.k8s.io/v1 alone, for the access-review client: like
// the other clients of this package it knows only its own group, so that the binary does
// not link client-go's clientset (see the package comment; a test keeps it out).
var reviewScheme = runtime.NewScheme()

func init() {
	utilruntime.Must(authorizationv1.AddToScheme(reviewScheme))
}

// Permission is one API permission portico's informers need, cluster-wide.
type Permission struct {
	Verb, Group, Resource string
}

// String returns "verb resource.group" (the core group has no suffix), as RBAC errors
// name it.
func (p Permission) String() string {
	if p.Group == "" {
		return p.Verb + " " + p.Resource
	}
	return p.Verb + " " + p.Resource + "." + p.Group
}

// RequiredPermissions are the permissions without which portico cannot keep the node's
// rules current: list and watch of Services, EndpointSlices, Nodes and ServiceCIDRs. A
// watch may work without list (client-go's watch-list needs only watch), until the next
// relist falls back to a LIST: a missing list is a fault as well.
var RequiredPermissions = []Permission{
	{"list", "", "services"}, {"watch", "", "services"},
	{"list", "discovery.k8s.io", "endpointslices"}, {"watch", "discovery.k8s.io", "endpointslices"},
	{"list", "", "nodes"}, {"watch", "", "nodes"},
	{"list", "networking.k8s.io", "servicecidrs"}, {"watch", "networking.k8s.io", "servicecidrs"},
}

// PermissionChecker asks the API server which of RequiredPermissions portico's identity
// lacks, with SelfSubjectAccessReviews (which every authenticated identity may create).
type PermissionChecker struct {
	client *rest.RESTClient
}

// NewPermissionChecker returns a checker using the API server of cfg; it sends nothing.
func NewPermissionChecker(cfg *rest.Config) (*PermissionChecker, error) {
	client, err := groupClient(cfg, authorizationv1.SchemeGroupVersion, reviewScheme)
	if err != nil {
		return nil, err
	}
	return &PermissionChecker{client: client}, nil
}

// Missing returns the required permissions the API server denies, in the order of
// RequiredPermissions.
func (c *PermissionChecker) Missing(ctx context.Context) ([]Permission, error) {
	var out []Permission
	for _, p := range RequiredPermissions {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: p.Verb, Group: p.Group, Resource: p.Resource},
		}}
		got := &authorizationv1.SelfSubjectAccessReview{}
		err := c.client.Post().Resource("selfsubjectaccessreviews").Body(r).Do(ctx).Into(got)
		if err != nil {
			return nil, fmt.Errorf("reviewing %s: %w", p, err)
		}
		if !got.Status.Allowed {
			out = append(out, p)
		}
	}
	return out, nil
}
