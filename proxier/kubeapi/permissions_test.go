package kubeapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"
)

// TestPermissionCheckerReviews: one SelfSubjectAccessReview per required permission,
// posted to authorization.k8s.io/v1, and the denied ones reported in order.
func TestPermissionCheckerReviews(t *testing.T) {
	denied := map[string]bool{"watch endpointslices.discovery.k8s.io": true, "list nodes": true}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var rev authorizationv1.SelfSubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Spec.ResourceAttributes == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		a := rev.Spec.ResourceAttributes
		p := Permission{Verb: a.Verb, Group: a.Group, Resource: a.Resource}.String()
		asked = append(asked, p)
		rev.Kind, rev.APIVersion = "SelfSubjectAccessReview", "authorization.k8s.io/v1"
		rev.Status.Allowed = !denied[p]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	defer srv.Close()
	c, err := NewPermissionChecker(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	missing, err := c.Missing(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != len(RequiredPermissions) {
		t.Errorf("asked %d reviews, want %d: %v", len(asked), len(RequiredPermissions), asked)
	}
	var got []string
	for _, p := range missing {
		got = append(got, p.String())
	}
	if want := []string{"watch endpointslices.discovery.k8s.io", "list nodes"}; !slices.Equal(got, want) {
		t.Errorf("missing %v, want %v", got, want)
	}
}

// TestBinaryLinksNoClientset: portico's binary must not link client-go's clientset (its
// fifty API groups' registrations cost about 10 MB of resident memory on every node).
func TestBinaryLinksNoClientset(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/portico-dev/portico/cmd/portico").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "k8s.io/client-go/kubernetes" || strings.HasPrefix(pkg, "k8s.io/client-go/kubernetes/typed/") ||
			strings.HasPrefix(pkg, "k8s.io/client-go/informers") {
			t.Errorf("cmd/portico links %s", pkg)
		}
	}
}
