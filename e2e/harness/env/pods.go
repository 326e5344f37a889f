package env

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// NetnsAnnotation on a Pod names the pod namespace of the topology whose traffic server
// the Pod stands for (e.g. "pod-a1"); the harness reports that namespace's addresses as
// the Pod's IPs.
const NetnsAnnotation = "e2e.portico.dev/netns"

// terminatingGrace is the grace period of TerminatePod: with no kubelet to confirm the
// deletion, the Pod stays Terminating that long.
const terminatingGrace = int64(3600)

// PodFor returns a Pod object for the traffic server of pod namespace netnsPod: bound to
// that namespace's node, with ServerPort declared for TCP and UDP.
func (e *Env) PodFor(namespace, name, netnsPod string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace, Labels: labels,
			Annotations: map[string]string{NetnsAnnotation: netnsPod},
		},
		Spec: corev1.PodSpec{
			NodeName:                     e.Topo.PodNode(netnsPod),
			AutomountServiceAccountToken: ptr(false),
			Containers: []corev1.Container{{
				Name: "server", Image: "registry.invalid/portico-e2e-server",
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: ServerPort, Protocol: corev1.ProtocolTCP},
					{Name: "echo-udp", ContainerPort: ServerPort, Protocol: corev1.ProtocolUDP},
				},
			}},
		},
	}
}

// CreatePod creates pod (see PodFor) and reports it running and ready, as a kubelet would.
func (e *Env) CreatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	if err := e.EnsureNamespace(ctx, pod.Namespace); err != nil {
		return nil, err
	}
	api := e.Cluster.Client().CoreV1().Pods(pod.Namespace)
	got, err := api.Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = api.Get(ctx, pod.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return e.SetPodReady(ctx, got.Namespace, got.Name, true)
}

// SetPodReady writes the Pod's status through the status subresource: Running, with the
// addresses of its pod namespace, and Ready (or not).
func (e *Env) SetPodReady(ctx context.Context, namespace, name string, ready bool) (*corev1.Pod, error) {
	api := e.Cluster.Client().CoreV1().Pods(namespace)
	pod, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	netnsPod := pod.Annotations[NetnsAnnotation]
	if e.Topo.PodNode(netnsPod) == "" {
		return nil, fmt.Errorf("pod %s/%s: annotation %s=%q names no pod namespace of the topology", namespace, name, NetnsAnnotation, netnsPod)
	}
	pod.Status = e.podStatus(netnsPod, ready)
	return api.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

func (e *Env) podStatus(netnsPod string, ready bool) corev1.PodStatus {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	st := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    e.Topo.NodeIP(e.Topo.PodNode(netnsPod), netns.IPv4).String(),
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "server", Ready: ready, Image: "registry.invalid/portico-e2e-server",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	for _, fam := range netns.Families {
		if ip := e.Topo.PodIP(netnsPod, fam); ip.IsValid() {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip.String()})
		}
	}
	if len(st.PodIPs) > 0 {
		st.PodIP = st.PodIPs[0].IP
	}
	return st
}

// TerminatePod deletes a Pod gracefully. With no kubelet to finish the deletion, it stays
// Terminating (deletionTimestamp set) with its last status, as a Pod whose containers are
// shutting down.
func (e *Env) TerminatePod(ctx context.Context, namespace, name string) error {
	return e.Cluster.Client().CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(terminatingGrace)})
}

// DeletePodNow removes a Pod at once (grace period 0), as a kubelet finishing a deletion.
func (e *Env) DeletePodNow(ctx context.Context, namespace, name string) error {
	err := e.Cluster.Client().CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
