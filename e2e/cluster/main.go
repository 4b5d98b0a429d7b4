// Command podtls-testcluster runs a single-machine Kubernetes control plane
// for podtls' end-to-end tests: embedded etcd, the real kube-apiserver, a few
// kube-controller-manager controllers, and a kubelet stand-in built from
// kubelet's own pod-certificate, trust-bundle and volume code. See
// e2e/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	maybeRunAPIServer()

	stateDir := flag.String("state-dir", "", "directory for kubeconfigs, PKI, etcd data, kubelet root dirs and state.json (default: a new temp dir)")
	nodes := flag.String("nodes", "podtls-node-1,podtls-node-2", "comma-separated Node names served by the kubelet stand-in")
	syncPeriod := flag.Duration("sync-period", 5*time.Second, "how often every pod's volumes are re-synced (kubelet: --sync-frequency, 1m)")
	port := flag.Int("apiserver-port", 0, "kube-apiserver port on 127.0.0.1 (0: pick a free one)")
	var apiArgs stringList
	flag.Var(&apiArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--v=3 (repeatable; later flags win)")
	audit := flag.Bool("audit-log", false, "write a Metadata-level audit log of every request to <state-dir>/audit.log (e.g. to count API requests per client)")
	podCerts := flag.Bool("pod-certificates", true, "serve the Pod Certificates API (PodCertificateRequest, ClusterTrustBundle): false starts kube-apiserver without its feature gates and runtime-config, like a default 1.35/1.36 or a managed cluster, and the kubelet stand-in with kubelet's no-op pod-certificate managers")
	tmpfs := flag.Bool("tmpfs", false, "back projected volumes with tmpfs like kubelet (needs root; default: plain directories)")
	klog.InitFlags(nil)
	flag.DurationVar(&objectCacheTTL, "object-cache-ttl", objectCacheTTL, "how long Secrets and ConfigMaps for projected volumes are cached (kubelet's \"Cache\" strategy)")
	flag.Parse()

	if *stateDir == "" {
		d, err := os.MkdirTemp("", "podtls-testcluster-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*stateDir = d
	}
	abs, err := filepath.Abs(*stateDir)
	if err == nil {
		*stateDir = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	t0 := time.Now()
	c, err := startCluster(ctx, options{
		StateDir:   *stateDir,
		Nodes:      strings.Split(*nodes, ","),
		SyncPeriod: *syncPeriod,
		Port:       *port,
		Tmpfs:      *tmpfs,
		ExtraArgs:  apiArgs,
		AuditLog:   *audit,

		NoPodCertificates: !*podCerts,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "podtls-testcluster: %v\n", err)
		os.Exit(1)
	}
	klog.InfoS("test cluster ready", "took", time.Since(t0), "state", c.statePath)
	fmt.Printf("READY %s\n", c.statePath)

	<-ctx.Done()
	klog.InfoS("shutting down")
	c.stop()
	klog.InfoS("stopped; state dir kept", "dir", *stateDir)
}
