package main

// Optional load check of the harness itself (not podtls' signer):
//
//	PODTLS_E2E_LOAD_PODS=200 go test -run TestLoad -v .
//
// creates N pods with a podCertificate volume spread over two nodes, issues
// them with the in-test signer, and reports the time until every volume is
// written plus peak RSS of the harness and of kube-apiserver.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

func procStatus(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, key+":"))
		}
	}
	return "?"
}

func TestLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PODTLS_E2E_LOAD_PODS"))
	if n <= 0 {
		t.Skip("set PODTLS_E2E_LOAD_PODS=<pods> to run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, options{StateDir: t.TempDir(), Nodes: []string{"load-1", "load-2"}, SyncPeriod: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()

	dyn := dynamic.NewForConfigOrDie(c.adminCfg)
	pcrGVR := schema.GroupVersionResource{Group: "certificates.k8s.io", Version: pcrVersion, Resource: "podcertificaterequests"}
	signerName := "load.podtls.test/signer"
	go runTestSigner(ctx, t, dyn, pcrGVR, signerName, newTestCA(t), make(chan string))

	ns := "load"
	if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "default ServiceAccount", 30*time.Second, func() (bool, error) {
		_, err := c.admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	no := false
	start := time.Now()
	for i := 0; i < n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: ns},
			Spec: corev1.PodSpec{
				NodeName:                     []string{"load-1", "load-2"}[i%2],
				AutomountServiceAccountToken: &no,
				Containers:                   []corev1.Container{{Name: "main", Image: "example.invalid/none"}},
				Volumes: []corev1.Volume{{Name: "identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
						SignerName: signerName, KeyType: "ED25519", CredentialBundlePath: "credentialbundle.pem"}}},
				}}}},
			},
		}
		if _, err := c.admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Since(start)
	waitFor(t, "all volumes written", 10*time.Minute, func() (bool, error) {
		ready := 0
		for _, p := range c.state().Pods {
			if p.VolumesReady {
				ready++
			}
		}
		return ready == n, fmt.Errorf("%d/%d ready", ready, n)
	})
	total := time.Since(start)
	t.Logf("%d pods: created in %v, all credential bundles written after %v (%.1f pods/s)", n, created, total, float64(n)/total.Seconds())
	t.Logf("harness (etcd + controllers + kubelet stand-ins + test signer): VmHWM %s, VmRSS %s", procStatus(os.Getpid(), "VmHWM"), procStatus(os.Getpid(), "VmRSS"))
	t.Logf("kube-apiserver: VmHWM %s, VmRSS %s", procStatus(c.api.pid(), "VmHWM"), procStatus(c.api.pid(), "VmRSS"))
}
