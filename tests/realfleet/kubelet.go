package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// runKubelet plays the scheduler and the kubelet of one cluster's fake node:
// unscheduled pods are bound to it, bound pods are reported running and ready
// (as a kubelet writes the status: phase, conditions with times, podIP,
// container statuses with imageID), and pods being deleted are confirmed gone.
// Node heartbeats are not needed: the node lifecycle controller is off.
func runKubelet(ctx context.Context, c *cluster) {
	_, kube, err := clients(c, "kubelet/realfleet")
	if err != nil {
		fmt.Fprintln(os.Stderr, c.name, "kubelet:", err)
		return
	}
	k := &kubelet{c: c, kube: kube, sem: make(chan struct{}, 16), inflight: map[string]bool{}}
	factory := informers.NewSharedInformerFactory(kube, 20*time.Second)
	pods := factory.Core().V1().Pods().Informer()
	handle := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			k.handle(ctx, p)
		}
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
}

type kubelet struct {
	c        *cluster
	kube     kubernetes.Interface
	sem      chan struct{}
	mu       sync.Mutex
	inflight map[string]bool
	nextIP   int
}

func (k *kubelet) handle(ctx context.Context, p *corev1.Pod) {
	var work func() error
	var action string
	switch {
	case p.DeletionTimestamp != nil:
		action = "delete"
		uid := p.UID
		work = func() error {
			zero := int64(0)
			err := k.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return nil
			}
			return err
		}
	case p.Spec.NodeName == "":
		action = "bind"
		work = func() error {
			b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID}, Target: corev1.ObjectReference{Kind: "Node", Name: nodeName(k.c)}}
			err := k.kube.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
	case p.Spec.NodeName == nodeName(k.c) && p.Status.Phase == corev1.PodPending:
		action = "run"
		work = func() error {
			current := p
			// A pod just bound has moved on since the informer saw it: read it again and retry.
			for try := 0; try < 5; try++ {
				_, err := k.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, k.running(current), metav1.UpdateOptions{})
				if err == nil && p.Namespace == "istio-system" && p.Labels["app"] == "istiod" {
					return k.istiodStarted(ctx)
				}
				if err == nil || apierrors.IsNotFound(err) {
					return nil
				}
				if !apierrors.IsConflict(err) {
					return err
				}
				if current, err = k.kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
					return nil
				}
				if current.Status.Phase != corev1.PodPending || current.DeletionTimestamp != nil {
					return nil
				}
			}
			return nil
		}
	default:
		return
	}
	// One call per pod and action at a time; the event that follows a bind is
	// not dropped while the bind is still finishing.
	key := string(p.UID) + "/" + action
	k.mu.Lock()
	if k.inflight[key] {
		k.mu.Unlock()
		return
	}
	k.inflight[key] = true
	k.mu.Unlock()
	k.sem <- struct{}{}
	go func() {
		defer func() {
			<-k.sem
			k.mu.Lock()
			delete(k.inflight, key)
			k.mu.Unlock()
		}()
		if err := work(); err != nil && ctx.Err() == nil {
			// The informer's resync brings the pod back for another try.
			fmt.Fprintf(os.Stderr, "%s kubelet: %s/%s: %v\n", k.c.name, p.Namespace, p.Name, err)
		}
	}()
}

func (k *kubelet) podIP() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextIP++
	n := k.nextIP
	return fmt.Sprintf("10.%d.%d.%d", 100+k.c.index%100, n/250, 2+n%250)
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// running is the pod's status as a kubelet reports it once every container started.
func (k *kubelet) running(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	now := metav1.Now()
	ip := k.podIP()
	st := &p.Status
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = nodeIP(k.c), []corev1.HostIP{{IP: nodeIP(k.c)}}
	st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	st.StartTime = &now
	st.Conditions = nil
	for _, t := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now, ObservedGeneration: p.Generation})
	}
	status := func(c corev1.Container, running bool) corev1.ContainerStatus {
		repo := c.Image
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		s := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: repo + "@sha256:" + digest(c.Image),
			ContainerID: "containerd://" + digest(string(p.UID)+"/"+c.Name), RestartCount: 0,
		}
		if running {
			started := true
			s.Ready, s.Started = true, &started
			s.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		} else {
			started := false
			s.Ready, s.Started = true, &started
			s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
		}
		return s
	}
	st.InitContainerStatuses = nil
	for _, c := range p.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, status(c, false))
	}
	st.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, status(c, true))
	}
	return p
}

// istiodStarted is what istiod does when it starts, where the API shows it: it
// reads cacerts (else its self-signed istio-ca-secret) and writes the roots it
// trusts into every namespace's istio-ca-root-cert (kube-* aside), as its
// namespace controller does. The sim does the same (ClusterStore::istiod_started).
func (k *kubelet) istiodStarted(ctx context.Context) error {
	secrets := k.kube.CoreV1().Secrets("istio-system")
	var root []byte
	s, err := secrets.Get(ctx, "cacerts", metav1.GetOptions{})
	switch {
	case err == nil:
		root = s.Data["root-cert.pem"]
	case apierrors.IsNotFound(err):
		if s, err := secrets.Get(ctx, "istio-ca-secret", metav1.GetOptions{}); err == nil {
			root = s.Data["ca-cert.pem"]
		}
	default:
		return err
	}
	if len(root) == 0 {
		return nil
	}
	namespaces, err := k.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var failed error
	for _, ns := range namespaces.Items {
		if strings.HasPrefix(ns.Name, "kube-") || ns.DeletionTimestamp != nil {
			continue
		}
		maps := k.kube.CoreV1().ConfigMaps(ns.Name)
		cm, err := maps.Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Labels: map[string]string{"istio.io/config": "true"}},
				Data:       map[string]string{"root-cert.pem": string(root)},
			}
			if _, err := maps.Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				failed = err
			}
		case err != nil:
			failed = err
		case cm.Data["root-cert.pem"] != string(root):
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data["root-cert.pem"] = string(root)
			if _, err := maps.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				failed = err
			}
		}
	}
	return failed
}
