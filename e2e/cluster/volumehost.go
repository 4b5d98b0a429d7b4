package main

// volumeHost is the stand-in for kubelet's kubeletVolumeHost
// (pkg/kubelet/volume_host.go). It lets us drive kubelet's own volume plugins
// -- pkg/volume/projected (which computes the payload for podCertificate,
// clusterTrustBundle, serviceAccountToken, configMap, secret and downwardAPI
// sources) wrapping pkg/volume/emptydir, which in turn use
// pkg/volume/util.AtomicWriter -- unchanged, so the files land exactly where
// and how kubelet writes them:
//
//	<root>/pods/<pod-uid>/volumes/kubernetes.io~projected/<volume>/
//	    ..2026_01_01_00_00_00.123456789/<files>   (timestamped payload dir)
//	    ..data -> ..2026_...                       (swapped atomically)
//	    <file> -> ..data/<file>                    (user-visible symlinks)
//
// Methods the two plugins never call are left to the embedded (nil)
// interfaces; calling one would panic, which the smoke test would catch.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util/hostutil"
	"k8s.io/kubernetes/pkg/volume/util/subpath"
	"k8s.io/mount-utils"
)

type volumeHost struct {
	volume.VolumeHost        // nil: unused methods
	volume.KubeletVolumeHost // nil: unused methods

	k        *kubeletStandIn
	mounter  mount.Interface
	hostUtil hostutil.HostUtils

	cacheMu sync.Mutex
	cache   map[string]cachedObject
}

// newVolumeHost: kubelet backs projected volumes with tmpfs (the projected
// plugin wraps an emptyDir with medium Memory). That needs root and leaves
// mounts behind if the harness is killed, so by default the mounter is a
// no-op (mount-utils' FakeMounter) and volumes are plain directories; with
// --tmpfs the real mounter is used and volumes are torn down (unmounted) on
// pod deletion and on exit.
func newVolumeHost(k *kubeletStandIn, tmpfs bool) *volumeHost {
	var m mount.Interface = mount.NewFakeMounter(nil)
	if tmpfs {
		m = mount.New("")
	}
	return &volumeHost{k: k, mounter: m, hostUtil: hostutil.NewHostUtil(), cache: map[string]cachedObject{}}
}

// Directory layout: identical to kubelet's getPluginDir / getPodVolumeDir etc.
// (pkg/kubelet/kubelet_getters.go) with --root-dir=<state-dir>/kubelet-<node>.
func (h *volumeHost) GetPluginDir(pluginName string) string {
	return filepath.Join(h.k.root, "plugins", pluginName)
}
func (h *volumeHost) GetVolumeDevicePluginDir(pluginName string) string {
	return filepath.Join(h.k.root, "plugins", pluginName, "volumeDevices")
}
func (h *volumeHost) GetPodsDir() string { return filepath.Join(h.k.root, "pods") }
func (h *volumeHost) GetPodVolumeDir(podUID types.UID, pluginName, volumeName string) string {
	return filepath.Join(h.k.root, "pods", string(podUID), "volumes", pluginName, volumeName)
}
func (h *volumeHost) GetPodPluginDir(podUID types.UID, pluginName string) string {
	return filepath.Join(h.k.root, "pods", string(podUID), "plugins", pluginName)
}
func (h *volumeHost) GetPodVolumeDeviceDir(podUID types.UID, pluginName string) string {
	return filepath.Join(h.k.root, "pods", string(podUID), "volumeDevices", pluginName)
}
func (h *volumeHost) GetKubeClient() clientset.Interface { return h.k.client }

// NewWrapperMounter mirrors kubeletVolumeHost.NewWrapperMounter: the wrapped
// volume is renamed "wrapped_<name>" and resolved through the plugin manager.
func (h *volumeHost) NewWrapperMounter(volName string, spec volume.Spec, pod *v1.Pod) (volume.Mounter, error) {
	wrapperVolumeName := "wrapped_" + volName
	if spec.Volume != nil {
		spec.Volume.Name = wrapperVolumeName
	}
	plugin, err := h.k.pluginMgr.FindPluginBySpec(&spec)
	if err != nil {
		return nil, err
	}
	return plugin.NewMounter(&spec, pod)
}

func (h *volumeHost) NewWrapperUnmounter(volName string, spec volume.Spec, podUID types.UID) (volume.Unmounter, error) {
	wrapperVolumeName := "wrapped_" + volName
	if spec.Volume != nil {
		spec.Volume.Name = wrapperVolumeName
	}
	plugin, err := h.k.pluginMgr.FindPluginBySpec(&spec)
	if err != nil {
		return nil, err
	}
	return plugin.NewUnmounter(spec.Name(), podUID)
}

func (h *volumeHost) GetMounter() mount.Interface { return h.mounter }
func (h *volumeHost) GetHostName() string {
	n, _ := os.Hostname()
	return n
}
func (h *volumeHost) GetNodeAllocatable() (v1.ResourceList, error) { return v1.ResourceList{}, nil }

// Secrets and ConfigMaps: kubelet serves them from its secret/configmap
// managers; this mirrors the manager's "Cache" change-detection strategy (a
// TTL cache in front of GETs made as the node, so the Node authorizer applies
// the same per-pod restrictions), with a TTL: 30s by default (kubelet's
// default for its "Cache" strategy is node-status-update-frequency-based,
// about a minute), --object-cache-ttl to shorten it in tests.
var objectCacheTTL = 30 * time.Second

type cachedObject struct {
	obj     any
	err     error
	fetched time.Time
}

func (h *volumeHost) cachedGet(kind, namespace, name string, get func() (any, error)) (any, error) {
	key := kind + "/" + namespace + "/" + name
	h.cacheMu.Lock()
	c, ok := h.cache[key]
	h.cacheMu.Unlock()
	if ok && time.Since(c.fetched) < objectCacheTTL && c.err == nil {
		return c.obj, nil
	}
	obj, err := get()
	h.cacheMu.Lock()
	h.cache[key] = cachedObject{obj: obj, err: err, fetched: time.Now()}
	h.cacheMu.Unlock()
	return obj, err
}

func (h *volumeHost) GetSecretFunc() func(namespace, name string) (*v1.Secret, error) {
	return func(namespace, name string) (*v1.Secret, error) {
		o, err := h.cachedGet("secret", namespace, name, func() (any, error) {
			return h.k.client.CoreV1().Secrets(namespace).Get(context.TODO(), name, metav1.GetOptions{})
		})
		if err != nil {
			return nil, err
		}
		return o.(*v1.Secret), nil
	}
}

func (h *volumeHost) GetConfigMapFunc() func(namespace, name string) (*v1.ConfigMap, error) {
	return func(namespace, name string) (*v1.ConfigMap, error) {
		o, err := h.cachedGet("configmap", namespace, name, func() (any, error) {
			return h.k.client.CoreV1().ConfigMaps(namespace).Get(context.TODO(), name, metav1.GetOptions{})
		})
		if err != nil {
			return nil, err
		}
		return o.(*v1.ConfigMap), nil
	}
}

// GetServiceAccountTokenFunc mirrors kubelet's token manager
// (pkg/kubelet/token): tokens are cached per (namespace, name, audiences,
// expiration, bound pod) and re-requested once 80% of their lifetime has
// passed (or after 24h), not on every SetUp.
func (h *volumeHost) GetServiceAccountTokenFunc() func(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return func(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		key := fmt.Sprintf("token/%s/%s/%v/%v", namespace, name, tr.Spec.Audiences, tr.Spec.ExpirationSeconds)
		if tr.Spec.BoundObjectRef != nil {
			key += "/" + string(tr.Spec.BoundObjectRef.UID)
		}
		h.cacheMu.Lock()
		c, ok := h.cache[key]
		h.cacheMu.Unlock()
		if ok {
			t := c.obj.(*authenticationv1.TokenRequest)
			exp := t.Status.ExpirationTimestamp.Time
			iat := exp.Add(-time.Duration(*t.Spec.ExpirationSeconds) * time.Second)
			if time.Now().Before(iat.Add(time.Duration(float64(exp.Sub(iat))*0.8))) && time.Since(iat) < 24*time.Hour {
				return t, nil
			}
		}
		t, err := h.k.client.CoreV1().ServiceAccounts(namespace).CreateToken(context.TODO(), name, tr, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		h.cacheMu.Lock()
		h.cache[key] = cachedObject{obj: t, fetched: time.Now()}
		h.cacheMu.Unlock()
		return t, nil
	}
}
func (h *volumeHost) DeleteServiceAccountTokenFunc() func(podUID types.UID) {
	return func(types.UID) {}
}
func (h *volumeHost) GetNodeLabels() (map[string]string, error) { return map[string]string{}, nil }
func (h *volumeHost) GetNodeName() types.NodeName               { return types.NodeName(h.k.nodeName) }
func (h *volumeHost) GetAttachedVolumesFromNodeStatus() (map[v1.UniqueVolumeName]string, error) {
	return map[v1.UniqueVolumeName]string{}, nil
}
func (h *volumeHost) GetEventRecorder() record.EventRecorder { return h.k.recorder }
func (h *volumeHost) GetSubpather() subpath.Interface        { return subpath.New(h.mounter) }

// KubeletVolumeHost part.
func (h *volumeHost) SetKubeletError(err error)                           {}
func (h *volumeHost) GetInformerFactory() informers.SharedInformerFactory { return h.k.informers }
func (h *volumeHost) WaitForCacheSync() error                             { return nil }
func (h *volumeHost) GetHostUtil() hostutil.HostUtils                     { return h.hostUtil }

// GetPodCertificateCredentialBundle is served by kubelet's own
// podcertificate.IssuingManager, exactly as kubeletVolumeHost does.
func (h *volumeHost) GetPodCertificateCredentialBundle(ctx context.Context, namespace, podName, podUID, volumeName string, sourceIndex int) ([]byte, []byte, error) {
	return h.k.pcm.GetPodCertificateCredentialBundle(ctx, namespace, podName, podUID, volumeName, sourceIndex)
}

// GetTrustAnchorsByName / GetTrustAnchorsBySigner differ in signature between
// releases (1.37 adds a context); see version_*.go.
