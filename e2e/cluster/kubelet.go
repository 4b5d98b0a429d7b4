package main

// kubeletStandIn is the part of kubelet that matters for pod certificates,
// assembled from kubelet's own packages and driven the way kubelet drives
// them:
//
//   - identity: a client certificate CN=system:node:<node>, O=system:nodes,
//     so the Node authorizer and NodeRestriction admission apply for real;
//     the stand-in registers its own Node object, like kubelet does;
//   - pod source: an informer on Pods with fieldSelector spec.nodeName=<node>
//     (kubelet's apiserver pod source uses the same selector);
//   - pkg/kubelet/podcertificate.IssuingManager, unchanged, built exactly like
//     pkg/kubelet/kubelet.go builds it (PCR informer filtered on
//     spec.nodeName, Node informer filtered on metadata.name, TrackPod on pod
//     add/update, ForgetPod on delete): key generation, proof of possession /
//     stub CSR, PCR creation, waiting, refresh at beginRefreshAt (+ jitter);
//   - pkg/kubelet/clustertrustbundle.LazyInformerManager, unchanged, as
//     kubelet constructs it;
//   - the volume plugins pkg/volume/projected + pkg/volume/emptydir with
//     pkg/volume/util.AtomicWriter, through volumeHost (volumehost.go).
//
// What is NOT kubelet's code: the pod sync loop. Kubelet's volume manager
// re-runs SetUp for projected volumes on every pod sync (on pod events and
// every --sync-frequency, 1m by default), and a failed SetUp leaves the
// previous payload in place. We run SetUp for every projected/emptyDir
// volume of a pod on pod events, shortly after PCR and ClusterTrustBundle
// events, and every --sync-period (default 5s, shorter than kubelet so tests
// do not wait a minute). Containers are not run; once all volumes are set up
// the pod's status is set to Running/Ready with podIP 127.0.0.1.

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"k8s.io/kubernetes/pkg/kubelet/clustertrustbundle"
	"k8s.io/kubernetes/pkg/kubelet/podcertificate"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/emptydir"
	"k8s.io/kubernetes/pkg/volume/projected"
	"k8s.io/mount-utils"
)

// offsetClock is the clock handed to the IssuingManager: real time plus an
// adjustable offset, so /advance-clock can make every certificate on a node
// reach beginRefreshAt and exercise the manager's real refresh path
// (credStateFresh -> credStateWaitRefresh -> credStateFresh).
type offsetClock struct {
	clock.RealClock
	offset atomic.Int64
}

func (c *offsetClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

type certStatus struct {
	Volume       string    `json:"volume"`
	SourceIndex  int       `json:"sourceIndex"`
	SignerName   string    `json:"signerName"`
	Ready        bool      `json:"ready"`
	Error        string    `json:"error,omitempty"`
	Serial       string    `json:"serial,omitempty"`
	NotBefore    time.Time `json:"notBefore,omitempty"`
	NotAfter     time.Time `json:"notAfter,omitempty"`
	ChainLength  int       `json:"chainLength,omitempty"`
	LeafSHA256   string    `json:"leafSHA256,omitempty"`
	PublicKeySHA string    `json:"publicKeySHA256,omitempty"`
}

type podStatus struct {
	Namespace    string               `json:"namespace"`
	Name         string               `json:"name"`
	UID          string               `json:"uid"`
	Node         string               `json:"node"`
	PodDir       string               `json:"podDir"`
	Volumes      map[string]string    `json:"volumes"`
	VolumesReady bool                 `json:"volumesReady"`
	LastError    string               `json:"lastError,omitempty"`
	LastSync     time.Time            `json:"lastSync"`
	LastWrite    time.Time            `json:"lastWrite,omitempty"`
	VolumeWrites map[string]time.Time `json:"volumeWrites"` // volume -> last time its payload (..data) changed
	Certificates []certStatus         `json:"certificates"`
	Reissues     int                  `json:"reissues"`
	statusSet    bool
	writeMarker  map[string]string // volume -> ..data target, to detect writes
}

type kubeletStandIn struct {
	nodeName  string
	root      string
	client    kubernetes.Interface
	informers informers.SharedInformerFactory
	pcm       podcertificate.Manager
	ctbm      clustertrustbundle.Manager
	pluginMgr *volume.VolumePluginMgr
	host      *volumeHost
	recorder  record.EventRecorder
	clock     *offsetClock
	queue     workqueue.TypedDelayingInterface[types.UID]
	onChange  func()

	mu     sync.RWMutex
	pods   map[types.UID]*corev1.Pod
	status map[types.UID]*podStatus
}

// GetPodByUID / GetPods implement podcertificate.PodManager (kubelet passes
// its pod manager; the upstream integration test passes a lister wrapper).
func (k *kubeletStandIn) GetPodByUID(uid types.UID) (*corev1.Pod, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	p, ok := k.pods[uid]
	return p, ok
}

func (k *kubeletStandIn) GetPods() []*corev1.Pod {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]*corev1.Pod, 0, len(k.pods))
	for _, p := range k.pods {
		out = append(out, p)
	}
	return out
}

func newKubeletStandIn(ctx context.Context, nodeName, root string, cfg *rest.Config, syncPeriod time.Duration, tmpfs, podCertificates bool, onChange func()) (*kubeletStandIn, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubelet-standin/" + nodeName
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "pods"), 0o750); err != nil {
		return nil, err
	}
	k := &kubeletStandIn{
		nodeName: nodeName,
		root:     root,
		client:   client,
		clock:    &offsetClock{},
		queue:    workqueue.NewTypedDelayingQueue[types.UID](),
		onChange: onChange,
		pods:     map[types.UID]*corev1.Pod{},
		status:   map[types.UID]*podStatus{},
	}

	// Register the Node, as kubelet does on start (NodeRestriction lets a
	// node create its own Node object).
	if err := k.registerNode(ctx); err != nil {
		return nil, fmt.Errorf("registering node %s: %w", nodeName, err)
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	k.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: nodeName})

	// Same informer factories as pkg/kubelet/kubelet.go.
	byNode := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	}))
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
	}))
	k.informers = byNode

	// Without the Pod Certificates API kubelet runs its no-op managers
	// (pkg/kubelet/kubelet.go, feature gates off).
	var pcrInformer cache.SharedIndexInformer
	var issuing *podcertificate.IssuingManager
	if podCertificates {
		issuing, pcrInformer = newIssuingManager(client, k, k.recorder, byNode, nodeInformers.Core().V1().Nodes(), types.NodeName(nodeName), k.clock)
		k.pcm = issuing
		k.ctbm = clustertrustbundle.NewLazyInformerManager(ctx, client, 2*110)
	} else {
		k.pcm = &podcertificate.NoOpManager{}
		k.ctbm = &clustertrustbundle.NoopManager{}
	}

	k.pluginMgr = &volume.VolumePluginMgr{}
	k.host = newVolumeHost(k, tmpfs)
	plugins := append(emptydir.ProbeVolumePlugins(), projected.ProbeVolumePlugins()...)
	if err := k.pluginMgr.InitPlugins(plugins, nil, k.host); err != nil {
		return nil, fmt.Errorf("initialising volume plugins: %w", err)
	}

	// A PCR changed: the manager moves its state machine on its own queue,
	// so look at the pod's volumes a little later (and again, in case the
	// manager was slower than us).
	if pcrInformer != nil {
		_, _ = pcrInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { k.kickOwner(obj) },
			UpdateFunc: func(_, obj any) { k.kickOwner(obj) },
		})
	}

	podInformer := byNode.Core().V1().Pods().Informer()
	_, _ = podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podUpdated(ctx, obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { k.podUpdated(ctx, obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				k.podDeleted(ctx, p)
			}
		},
	})

	// ClusterTrustBundle changes: kubelet only notices them at the next pod
	// sync; we watch them (as the node, so the Node authorizer's rules for
	// CTBs are exercised) and resync pods that project a trust bundle.
	ctbGVR := schema.GroupVersionResource{Group: "certificates.k8s.io", Version: ctbVersion, Resource: "clustertrustbundles"}
	dynInformers := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	if podCertificates {
		_, _ = dynInformers.ForResource(ctbGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { k.kickTrustBundlePods() },
			UpdateFunc: func(any, any) { k.kickTrustBundlePods() },
			DeleteFunc: func(any) { k.kickTrustBundlePods() },
		})
	}

	byNode.Start(ctx.Done())
	nodeInformers.Start(ctx.Done())
	dynInformers.Start(ctx.Done())
	if issuing != nil {
		go issuing.Run(ctx)
	}

	for i := 0; i < 4; i++ {
		go k.worker(ctx)
	}
	go func() {
		t := time.NewTicker(syncPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				k.queue.ShutDown()
				return
			case <-t.C:
				for _, p := range k.GetPods() {
					k.queue.Add(p.UID)
				}
			}
		}
	}()
	return k, nil
}

func (k *kubeletStandIn) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   k.nodeName,
			Labels: map[string]string{"kubernetes.io/hostname": k.nodeName, "kubernetes.io/os": "linux"},
		},
	}
	var err error
	for i := 0; i < 50; i++ {
		_, err = k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// Report Ready, best effort (kubelet's node status loop).
	n, err := k.client.CoreV1().Nodes().Get(ctx, k.nodeName, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "podtls test-cluster kubelet stand-in", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: k.nodeName}}
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		klog.InfoS("Could not set node status", "node", k.nodeName, "err", err)
	}
	return nil
}

// teardownPodDir unmounts (if --tmpfs) and removes every volume of a pod,
// then the pod directory, like kubelet's volume manager + pod cleanup.
func (k *kubeletStandIn) teardownPodDir(podDir string) {
	plugins, _ := os.ReadDir(filepath.Join(podDir, "volumes"))
	for _, p := range plugins {
		vols, _ := os.ReadDir(filepath.Join(podDir, "volumes", p.Name()))
		for _, v := range vols {
			dir := filepath.Join(podDir, "volumes", p.Name(), v.Name())
			if err := mount.CleanupMountPoint(dir, k.host.mounter, false); err != nil {
				klog.ErrorS(err, "tearing down volume", "dir", dir)
			}
		}
	}
	_ = os.RemoveAll(podDir)
}

// teardownAll is called on exit.
func (k *kubeletStandIn) teardownAll() {
	for _, st := range k.snapshot() {
		if _, isFake := k.host.mounter.(*mount.FakeMounter); !isFake {
			k.teardownPodDir(st.PodDir)
		}
	}
}

func (k *kubeletStandIn) kick(uid types.UID) {
	k.queue.Add(uid)
	k.queue.AddAfter(uid, 300*time.Millisecond)
	k.queue.AddAfter(uid, 1500*time.Millisecond)
}

func (k *kubeletStandIn) kickOwner(obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, o := range m.GetOwnerReferences() {
		if o.Kind == "Pod" {
			k.kick(o.UID)
		}
	}
}

func (k *kubeletStandIn) kickTrustBundlePods() {
	for _, p := range k.GetPods() {
		for _, v := range p.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.ClusterTrustBundle != nil {
					k.kick(p.UID)
				}
			}
		}
	}
}

func (k *kubeletStandIn) podUpdated(ctx context.Context, p *corev1.Pod) {
	if p.Spec.NodeName != k.nodeName {
		return
	}
	k.mu.Lock()
	k.pods[p.UID] = p
	if _, ok := k.status[p.UID]; !ok {
		k.status[p.UID] = &podStatus{
			Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: k.nodeName,
			PodDir: filepath.Join(k.root, "pods", string(p.UID)), Volumes: map[string]string{},
			writeMarker: map[string]string{},
		}
	}
	k.mu.Unlock()
	k.pcm.TrackPod(ctx, p)
	k.kick(p.UID)
}

func (k *kubeletStandIn) podDeleted(ctx context.Context, p *corev1.Pod) {
	k.mu.Lock()
	delete(k.pods, p.UID)
	k.mu.Unlock()
	k.pcm.ForgetPod(ctx, p)
	k.queue.Add(p.UID)
}

// reissue forgets all podCertificate state of a pod and tracks it again: the
// IssuingManager starts over from credStateInitial with a fresh key and PCR,
// exactly what happens to every pod when kubelet restarts ("State is not
// preserved across restarts"). Until the new PCR is issued, SetUp fails and
// the old files stay in place, as with kubelet.
func (k *kubeletStandIn) reissue(ctx context.Context, uid types.UID) bool {
	p, ok := k.GetPodByUID(uid)
	if !ok {
		return false
	}
	k.mu.Lock()
	if st := k.status[uid]; st != nil {
		st.Reissues++
	}
	k.mu.Unlock()
	k.pcm.ForgetPod(ctx, p)
	k.pcm.TrackPod(ctx, p)
	k.kick(uid)
	return true
}

// advanceClock jumps the IssuingManager's clock forward by d for hold, and
// re-queues all pods meanwhile, so that every certificate whose (jittered:
// status.beginRefreshAt + up to 5m) refresh time falls within now+d goes
// through the manager's normal refresh path (credStateFresh ->
// credStateWaitRefresh -> credStateFresh, old files served until the new
// certificate is issued). The jump is temporary: a permanent offset would make
// every newly issued certificate due for refresh immediately.
func (k *kubeletStandIn) advanceClock(ctx context.Context, d, hold time.Duration) {
	k.clock.offset.Add(int64(d))
	for _, p := range k.GetPods() {
		k.pcm.TrackPod(ctx, p)
		k.kick(p.UID)
	}
	time.AfterFunc(hold, func() { k.clock.offset.Add(-int64(d)) })
}

func (k *kubeletStandIn) worker(ctx context.Context) {
	for {
		uid, quit := k.queue.Get()
		if quit {
			return
		}
		k.syncPod(ctx, uid)
		k.queue.Done(uid)
	}
}

func (k *kubeletStandIn) syncPod(ctx context.Context, uid types.UID) {
	pod, ok := k.GetPodByUID(uid)
	if !ok {
		// Pod gone: tear down its volumes (kubelet unmounts, then removes
		// the pod directory).
		k.mu.Lock()
		st := k.status[uid]
		delete(k.status, uid)
		k.mu.Unlock()
		if st != nil {
			k.teardownPodDir(st.PodDir)
			k.onChange()
		}
		return
	}
	if pod.DeletionTimestamp != nil {
		// Graceful deletion: kubelet kills the containers, then its status
		// manager deletes the pod with grace period 0. No containers here.
		zero := int64(0)
		err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			klog.InfoS("Deleting terminating pod", "pod", klog.KObj(pod), "err", err)
			k.queue.AddAfter(uid, time.Second)
		}
		return
	}

	var errs []string
	volumes := map[string]string{}
	markers := map[string]string{}
	allReady := true
	for i := range pod.Spec.Volumes {
		v := pod.Spec.Volumes[i]
		if v.Projected == nil && v.EmptyDir == nil {
			continue // not mirrored (secret, configMap, hostPath... volumes)
		}
		spec := volume.NewSpecFromVolume(&v)
		plugin, err := k.pluginMgr.FindPluginBySpec(spec)
		if err != nil {
			errs = append(errs, fmt.Sprintf("volume %s: %v", v.Name, err))
			allReady = false
			continue
		}
		mounter, err := plugin.NewMounter(spec, pod)
		if err != nil {
			errs = append(errs, fmt.Sprintf("volume %s: %v", v.Name, err))
			allReady = false
			continue
		}
		dir := mounter.GetPath()
		volumes[v.Name] = dir
		args := volume.MounterArgs{}
		if pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.FSGroup != nil {
			args.FsGroup = pod.Spec.SecurityContext.FSGroup
		}
		if err := mounter.SetUp(args); err != nil {
			errs = append(errs, fmt.Sprintf("volume %s: %v", v.Name, err))
			allReady = false
		}
		if target, err := os.Readlink(filepath.Join(dir, "..data")); err == nil {
			markers[v.Name] = target
		}
	}

	certs := k.certificateStatus(ctx, pod)

	k.mu.Lock()
	st := k.status[uid]
	if st == nil {
		k.mu.Unlock()
		return
	}
	changed := !st.VolumesReady && allReady
	st.Volumes = volumes
	st.VolumesReady = allReady
	newErr := ""
	if len(errs) > 0 {
		sort.Strings(errs)
		newErr = fmt.Sprint(errs)
	}
	changed = changed || newErr != st.LastError
	st.LastError = newErr
	st.LastSync = time.Now()
	if st.VolumeWrites == nil {
		st.VolumeWrites = map[string]time.Time{}
	}
	for name, m := range markers {
		if st.writeMarker[name] != m {
			st.LastWrite = time.Now()
			st.VolumeWrites[name] = st.LastWrite
			changed = true
		}
	}
	st.writeMarker = markers
	if fmt.Sprint(certs) != fmt.Sprint(st.Certificates) {
		changed = true
	}
	st.Certificates = certs
	setStatus := allReady && !st.statusSet
	k.mu.Unlock()

	if setStatus && k.setPodRunning(ctx, pod) {
		k.mu.Lock()
		st.statusSet = true
		k.mu.Unlock()
	}
	if changed {
		k.onChange()
	}
}

func (k *kubeletStandIn) certificateStatus(ctx context.Context, pod *corev1.Pod) []certStatus {
	out := []certStatus{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for i, s := range v.Projected.Sources {
			if s.PodCertificate == nil {
				continue
			}
			cs := certStatus{Volume: v.Name, SourceIndex: i, SignerName: s.PodCertificate.SignerName}
			_, chain, err := k.pcm.GetPodCertificateCredentialBundle(ctx, pod.Namespace, pod.Name, string(pod.UID), v.Name, i)
			if err != nil {
				cs.Error = err.Error()
				out = append(out, cs)
				continue
			}
			rest := chain
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				cs.ChainLength++
				if cs.ChainLength == 1 {
					sum := sha256.Sum256(b.Bytes)
					cs.LeafSHA256 = hex.EncodeToString(sum[:])
					if c, err := x509.ParseCertificate(b.Bytes); err == nil {
						cs.Ready = true
						cs.Serial = c.SerialNumber.Text(16)
						cs.NotBefore, cs.NotAfter = c.NotBefore, c.NotAfter
						pk := sha256.Sum256(c.RawSubjectPublicKeyInfo)
						cs.PublicKeySHA = hex.EncodeToString(pk[:])
					}
				}
			}
			out = append(out, cs)
		}
	}
	return out
}

// setPodRunning reports the pod Running and Ready on 127.0.0.1 (what
// kubelet's status manager would do once containers start).
func (k *kubeletStandIn) setPodRunning(ctx context.Context, pod *corev1.Pod) bool {
	p := pod.DeepCopy()
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP = "127.0.0.1"
	p.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	p.Status.PodIP = "127.0.0.1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	if p.Status.StartTime == nil {
		p.Status.StartTime = &now
	}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptrTo(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := k.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		klog.V(2).InfoS("Setting pod status", "pod", klog.KObj(p), "err", err)
		return false
	}
	return true
}

func ptrTo[T any](v T) *T { return &v }

func (k *kubeletStandIn) snapshot() []podStatus {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]podStatus, 0, len(k.status))
	for _, st := range k.status {
		c := *st
		c.Volumes = map[string]string{}
		for a, b := range st.Volumes {
			c.Volumes[a] = b
		}
		c.Certificates = append([]certStatus(nil), st.Certificates...)
		c.VolumeWrites = map[string]time.Time{}
		for a, b := range st.VolumeWrites {
			c.VolumeWrites[a] = b
		}
		out = append(out, c)
	}
	return out
}
