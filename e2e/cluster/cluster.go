package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"go.etcd.io/etcd/server/v3/embed"
)

type options struct {
	StateDir   string
	Nodes      []string
	SyncPeriod time.Duration
	Port       int // apiserver port, 0 = pick a free one
	Tmpfs      bool
	ExtraArgs  []string // appended to kube-apiserver's flags
	AuditLog   bool     // Metadata-level audit log at <state-dir>/audit.log
	// NoPodCertificates starts the release without the Pod Certificates API:
	// kube-apiserver without the feature gates and runtime-config (the
	// default of 1.35/1.36, and of most managed clusters), the kubelet
	// stand-in with kubelet's no-op pod-certificate and trust-bundle managers
	// (what kubelet runs with the gates off), no PCR cleaner.
	NoPodCertificates bool
}

// State is what the harness publishes in <state-dir>/state.json and on
// GET /state. Field names are the contract with the Rust tests.
type State struct {
	KubernetesVersion string            `json:"kubernetesVersion"`
	PCRAPIVersion     string            `json:"pcrAPIVersion"` // "" without the Pod Certificates API
	CTBAPIVersion     string            `json:"ctbAPIVersion"`
	APIServerURL      string            `json:"apiServerURL"`
	Kubeconfig        string            `json:"kubeconfig"`
	NodeKubeconfigs   map[string]string `json:"nodeKubeconfigs"`
	CAFile            string            `json:"caFile"`
	EtcdURL           string            `json:"etcdURL"`
	ControlURL        string            `json:"controlURL"`
	APIServerLog      string            `json:"apiServerLog"`
	AuditLog          string            `json:"auditLog,omitempty"`
	APIServerPID      int               `json:"apiServerPID"`
	APIServerRestarts int               `json:"apiServerRestarts"`
	Nodes             map[string]string `json:"nodes"` // node name -> kubelet root dir
	Pods              []podStatus       `json:"pods"`
	UpdatedAt         time.Time         `json:"updatedAt"`
}

type cluster struct {
	opts      options
	ctx       context.Context
	cancel    context.CancelFunc
	etcd      *embed.Etcd
	etcdURL   string
	api       *apiServer
	pki       *pki
	adminCfg  *rest.Config
	admin     kubernetes.Interface
	kubelets  map[string]*kubeletStandIn
	httpSrv   *http.Server
	ctlURL    string
	statePath string
	baseState State

	stateMu    sync.Mutex
	stateDirty chan struct{}
}

func startCluster(parent context.Context, o options) (*cluster, error) {
	if o.SyncPeriod == 0 {
		o.SyncPeriod = 5 * time.Second
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"podtls-node-1", "podtls-node-2"}
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	// Every run starts from scratch: a reused state dir would pair new PKI
	// with old etcd data.
	old, _ := filepath.Glob(filepath.Join(o.StateDir, "kubelet-*"))
	for _, p := range append(old, "etcd", "pki", "state.json", "kube-apiserver.log", "audit.log") {
		if !filepath.IsAbs(p) {
			p = filepath.Join(o.StateDir, p)
		}
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("cleaning state dir: %w", err)
		}
	}
	// The kubelet code runs in this process: give it the same feature gates
	// the cluster has (kubelet would be started with them).
	gates := featureGates
	if o.NoPodCertificates {
		gates = map[string]bool{}
		for g := range featureGates {
			gates[g] = false
		}
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(gates); err != nil {
		return nil, fmt.Errorf("feature gates: %w", err)
	}

	ctx, cancel := context.WithCancel(parent)
	c := &cluster{opts: o, ctx: ctx, cancel: cancel, kubelets: map[string]*kubeletStandIn{},
		statePath: filepath.Join(o.StateDir, "state.json"), stateDirty: make(chan struct{}, 1)}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()

	var err error
	c.pki, err = newPKI(filepath.Join(o.StateDir, "pki"), o.Nodes)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}

	t0 := time.Now()
	c.etcd, c.etcdURL, err = startEtcd(filepath.Join(o.StateDir, "etcd"))
	if err != nil {
		return nil, err
	}
	klog.InfoS("etcd ready", "url", c.etcdURL, "took", time.Since(t0))

	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	kubeconfig := filepath.Join(o.StateDir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, url, c.pki.CA.CertPEM, "podtls-admin", c.pki.Admin); err != nil {
		return nil, err
	}
	c.adminCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	c.adminCfg.QPS, c.adminCfg.Burst = 500, 1000
	c.admin = kubernetes.NewForConfigOrDie(c.adminCfg)
	nodeKubeconfigs := map[string]string{}
	for _, n := range o.Nodes {
		p := filepath.Join(o.StateDir, "node-"+n+".kubeconfig")
		if err := writeKubeconfig(p, url, c.pki.CA.CertPEM, "system:node:"+n, c.pki.nodeClient[n]); err != nil {
			return nil, err
		}
		nodeKubeconfigs[n] = p
	}

	t0 = time.Now()
	args := apiServerArgs(c.pki, c.etcdURL, port, o.StateDir, !o.NoPodCertificates)
	if o.AuditLog {
		policy := filepath.Join(o.StateDir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+filepath.Join(o.StateDir, "audit.log"),
			"--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s")
	}
	args = append(args, o.ExtraArgs...)
	c.api = &apiServer{
		args:    args,
		logPath: filepath.Join(o.StateDir, "kube-apiserver.log"),
		url:     url,
		admin:   c.admin,
	}
	if err := c.api.start(ctx); err != nil {
		return nil, err
	}
	klog.InfoS("kube-apiserver ready", "url", url, "took", time.Since(t0))

	if err := runControllers(ctx, c.adminCfg, c.pki.CA.CertPEM, !o.NoPodCertificates); err != nil {
		return nil, fmt.Errorf("controllers: %w", err)
	}

	for _, n := range o.Nodes {
		cfg, err := clientcmd.BuildConfigFromFlags("", nodeKubeconfigs[n])
		if err != nil {
			return nil, err
		}
		k, err := newKubeletStandIn(ctx, n, filepath.Join(o.StateDir, "kubelet-"+n), cfg, o.SyncPeriod, o.Tmpfs, !o.NoPodCertificates, c.markDirty)
		if err != nil {
			return nil, err
		}
		c.kubelets[n] = k
	}

	// Control endpoint.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.ctlURL = "http://" + l.Addr().String()
	c.httpSrv = &http.Server{Handler: c.routes()}
	go func() { _ = c.httpSrv.Serve(l) }()

	pcrAPI, ctbAPI := "certificates.k8s.io/"+pcrVersion, "certificates.k8s.io/"+ctbVersion
	if o.NoPodCertificates {
		pcrAPI, ctbAPI = "", ""
	}
	c.baseState = State{
		KubernetesVersion: k8sVersion,
		PCRAPIVersion:     pcrAPI,
		CTBAPIVersion:     ctbAPI,
		APIServerURL:      url,
		Kubeconfig:        kubeconfig,
		NodeKubeconfigs:   nodeKubeconfigs,
		CAFile:            c.pki.CA.CertFile,
		EtcdURL:           c.etcdURL,
		ControlURL:        c.ctlURL,
		APIServerLog:      c.api.logPath,
		AuditLog:          auditPath(o),
		Nodes:             map[string]string{},
	}
	for n, k := range c.kubelets {
		c.baseState.Nodes[n] = k.root
	}
	if err := c.writeState(); err != nil {
		return nil, err
	}
	go c.stateWriter()
	ok = true
	return c, nil
}

func (c *cluster) markDirty() {
	select {
	case c.stateDirty <- struct{}{}:
	default:
	}
}

func (c *cluster) stateWriter() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.stateDirty:
			if err := c.writeState(); err != nil {
				klog.ErrorS(err, "writing state file")
			}
			time.Sleep(100 * time.Millisecond) // coalesce bursts
		}
	}
}

func (c *cluster) state() State {
	s := c.baseState
	s.APIServerPID = c.api.pid()
	c.api.mu.Lock()
	s.APIServerRestarts = c.api.restarts
	c.api.mu.Unlock()
	s.Pods = []podStatus{}
	for _, k := range c.kubelets {
		s.Pods = append(s.Pods, k.snapshot()...)
	}
	sort.Slice(s.Pods, func(i, j int) bool {
		if s.Pods[i].Namespace != s.Pods[j].Namespace {
			return s.Pods[i].Namespace < s.Pods[j].Namespace
		}
		return s.Pods[i].Name < s.Pods[j].Name
	})
	s.UpdatedAt = time.Now()
	return s
}

// writeState writes state.json atomically (temp file + rename).
func (c *cluster) writeState() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	b, err := json.MarshalIndent(c.state(), "", "  ")
	if err != nil {
		return err
	}
	tmp := c.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath)
}

func (c *cluster) stop() {
	if c.httpSrv != nil {
		_ = c.httpSrv.Close()
	}
	c.cancel()
	if c.api != nil {
		c.api.stop()
	}
	for _, k := range c.kubelets {
		k.teardownAll()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
}

// findPod locates a pod tracked by one of the kubelet stand-ins.
func (c *cluster) findPod(namespace, name string) (*kubeletStandIn, types.UID, bool) {
	for _, k := range c.kubelets {
		for _, p := range k.GetPods() {
			if p.Namespace == namespace && p.Name == name {
				return k, p.UID, true
			}
		}
	}
	return nil, "", false
}

func (c *cluster) podStatus(uid types.UID) (podStatus, bool) {
	for _, k := range c.kubelets {
		k.mu.RLock()
		st, ok := k.status[uid]
		var cp podStatus
		if ok {
			cp = *st
			cp.Certificates = append([]certStatus(nil), st.Certificates...)
			cp.VolumeWrites = map[string]time.Time{}
			for a, b := range st.VolumeWrites {
				cp.VolumeWrites[a] = b
			}
		}
		k.mu.RUnlock()
		if ok {
			return cp, true
		}
	}
	return podStatus{}, false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

func (c *cluster) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, c.state()) })

	// POST /refresh?namespace=NS&pod=NAME[&wait=60s]
	// Re-issues every podCertificate projection of the pod (new key, new
	// PCR). With wait, returns once every projection has a certificate with
	// a different serial and the volume has been rewritten.
	mux.HandleFunc("POST /refresh", func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("pod")
		wait, err := durationParam(r, "wait", 0)
		if err != nil {
			httpError(w, 400, "bad wait: %v", err)
			return
		}
		k, uid, ok := c.findPod(ns, name)
		if !ok {
			httpError(w, 404, "pod %s/%s is not on any stand-in node", ns, name)
			return
		}
		before, _ := c.podStatus(uid)
		old := map[string]string{}
		for _, cs := range before.Certificates {
			old[fmt.Sprintf("%s/%d", cs.Volume, cs.SourceIndex)] = cs.Serial
		}
		start := time.Now()
		k.reissue(c.ctx, uid)
		if wait == 0 {
			writeJSON(w, 202, map[string]any{"pod": ns + "/" + name, "uid": uid, "previous": old})
			return
		}
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			st, _ := c.podStatus(uid)
			done := len(st.Certificates) > 0
			for _, cs := range st.Certificates {
				if !cs.Ready || cs.Serial == old[fmt.Sprintf("%s/%d", cs.Volume, cs.SourceIndex)] || !st.VolumeWrites[cs.Volume].After(start) {
					done = false
				}
			}
			if done {
				writeJSON(w, 200, map[string]any{"pod": ns + "/" + name, "uid": uid, "previous": old, "status": st, "took": time.Since(start).String()})
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		st, _ := c.podStatus(uid)
		writeJSON(w, 504, map[string]any{"error": "timed out waiting for the new certificate", "status": st})
	})

	// GET /pod?namespace=NS&pod=NAME[&wait=60s] : one pod's status; with
	// wait, block until every volume is set up and every podCertificate
	// source has a certificate (200), or time out (504).
	mux.HandleFunc("GET /pod", func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("pod")
		wait, err := durationParam(r, "wait", 0)
		if err != nil {
			httpError(w, 400, "bad wait: %v", err)
			return
		}
		deadline := time.Now().Add(wait)
		for {
			_, uid, found := c.findPod(ns, name)
			st, ok := c.podStatus(uid)
			ready := found && ok && st.VolumesReady
			for _, cs := range st.Certificates {
				ready = ready && cs.Ready
			}
			if ready || (wait == 0 && ok) {
				writeJSON(w, 200, st)
				return
			}
			if !time.Now().Before(deadline) {
				if !ok {
					httpError(w, 404, "pod %s/%s is not on any stand-in node", ns, name)
				} else {
					writeJSON(w, 504, st)
				}
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	// POST /resync?namespace=NS&pod=NAME : run the pod's volume SetUp now.
	mux.HandleFunc("POST /resync", func(w http.ResponseWriter, r *http.Request) {
		k, uid, ok := c.findPod(r.URL.Query().Get("namespace"), r.URL.Query().Get("pod"))
		if !ok {
			httpError(w, 404, "pod not found")
			return
		}
		k.kick(uid)
		writeJSON(w, 202, map[string]any{"uid": uid})
	})

	// POST /advance-clock?node=NAME&by=2h[&hold=3s] : jump the node's
	// pod-certificate manager clock forward by `by` for `hold`, exercising
	// the manager's real refresh path for every certificate due by then.
	mux.HandleFunc("POST /advance-clock", func(w http.ResponseWriter, r *http.Request) {
		k, ok := c.kubelets[r.URL.Query().Get("node")]
		if !ok {
			httpError(w, 404, "unknown node")
			return
		}
		by, err := durationParam(r, "by", 0)
		if err != nil || by <= 0 {
			httpError(w, 400, "by must be a positive duration")
			return
		}
		hold, err := durationParam(r, "hold", 3*time.Second)
		if err != nil || hold <= 0 {
			httpError(w, 400, "hold must be a positive duration")
			return
		}
		k.advanceClock(c.ctx, by, hold)
		writeJSON(w, 200, map[string]any{"node": k.nodeName, "by": by.String(), "hold": hold.String()})
	})

	// POST /restart-apiserver[?down=5s][&mode=kill] : SIGTERM (mode=kill:
	// SIGKILL) kube-apiserver, optionally
	// stay down, start it again on the same port with the same etcd;
	// returns when /readyz is ok.
	mux.HandleFunc("POST /restart-apiserver", func(w http.ResponseWriter, r *http.Request) {
		down, err := durationParam(r, "down", 0)
		if err != nil {
			httpError(w, 400, "bad down: %v", err)
			return
		}
		t0 := time.Now()
		if err := c.api.restart(c.ctx, down, r.URL.Query().Get("mode") == "kill"); err != nil {
			httpError(w, 500, "restart failed: %v", err)
			return
		}
		c.markDirty()
		writeJSON(w, 200, map[string]any{"pid": c.api.pid(), "took": time.Since(t0).String()})
	})
	return mux
}

func auditPath(o options) string {
	if !o.AuditLog {
		return ""
	}
	return filepath.Join(o.StateDir, "audit.log")
}
