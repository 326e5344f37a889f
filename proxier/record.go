package proxier

import (
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// recordMeta is the identity the cache records keep of an API object, and the part of
// metav1.Object and runtime.Object that the informer's store needs of them (it keys
// objects by namespace and name).
type recordMeta struct {
	name, namespace, resourceVersion string
}

// metaOf returns the identity of m; namespaces are interned (a few across the cluster).
func metaOf(m *metav1.ObjectMeta) recordMeta {
	return recordMeta{name: m.Name, namespace: unique.Make(m.Namespace).Value(), resourceVersion: m.ResourceVersion}
}

// objectMeta returns the ObjectMeta a typed object built from the record carries.
func (m recordMeta) objectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.name, Namespace: m.namespace, ResourceVersion: m.resourceVersion}
}

// GetObjectMeta implements metav1.ObjectMetaAccessor.
func (m *recordMeta) GetObjectMeta() metav1.Object {
	om := m.objectMeta()
	return &om
}

// GetObjectKind implements runtime.Object.
func (m *recordMeta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
