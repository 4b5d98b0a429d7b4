package main

// Smoke test: start the whole test cluster in-process, issue a pod
// certificate through a trivial in-test signer (not podtls' signer), and check
// the files the kubelet stand-in writes, a forced refresh, a trust-bundle
// projection and an apiserver restart.
//
// The signer works on unstructured objects so the same code handles
// certificates.k8s.io/v1beta1 (1.35: spec.pkixPublicKey) and v1 (1.37:
// spec.stubPKCS10Request).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

func TestMain(m *testing.M) {
	maybeRunAPIServer()
	os.Exit(m.Run())
}

type testCA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

func newTestCA(t *testing.T) *testCA {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smoke test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: k, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// requestedPublicKey reads the key from whichever field the served version has.
func requestedPublicKey(pcr *unstructured.Unstructured) (crypto.PublicKey, error) {
	if s, ok, _ := unstructured.NestedString(pcr.Object, "spec", "pkixPublicKey"); ok && s != "" {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return x509.ParsePKIXPublicKey(der)
	}
	if s, ok, _ := unstructured.NestedString(pcr.Object, "spec", "stubPKCS10Request"); ok && s != "" {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return nil, err
		}
		return csr.PublicKey, nil
	}
	return nil, fmt.Errorf("PCR has neither spec.pkixPublicKey nor spec.stubPKCS10Request")
}

// runTestSigner issues every pending PCR for signerName: 2h certificates
// (clamped to maxExpirationSeconds), beginRefreshAt = notAfter - 30m; it
// denies every PCR for signerName+"-deny".
func runTestSigner(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, signerName string, ca *testCA, issued chan<- string) {
	for ctx.Err() == nil {
		list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(500 * time.Millisecond) // e.g. apiserver restarting
			continue
		}
		for i := range list.Items {
			pcr := &list.Items[i]
			sn, _, _ := unstructured.NestedString(pcr.Object, "spec", "signerName")
			if sn != signerName && sn != signerName+"-deny" {
				continue
			}
			if conds, _, _ := unstructured.NestedSlice(pcr.Object, "status", "conditions"); len(conds) > 0 {
				continue
			}
			if sn == signerName+"-deny" {
				pcr.Object["status"] = map[string]any{"conditions": []any{map[string]any{
					"type": "Denied", "status": "True", "reason": "SmokeTestDenied",
					"message": "denied by the e2e smoke-test signer", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
				}}}
				if _, err := dyn.Resource(gvr).Namespace(pcr.GetNamespace()).UpdateStatus(ctx, pcr, metav1.UpdateOptions{}); err != nil {
					t.Logf("denying %s/%s: %v", pcr.GetNamespace(), pcr.GetName(), err)
				}
				continue
			}
			pub, err := requestedPublicKey(pcr)
			if err != nil {
				t.Errorf("PCR %s: %v", pcr.GetName(), err)
				continue
			}
			podName, _, _ := unstructured.NestedString(pcr.Object, "spec", "podName")
			lifetime := 2 * time.Hour
			if m, ok, _ := unstructured.NestedInt64(pcr.Object, "spec", "maxExpirationSeconds"); ok && time.Duration(m)*time.Second < lifetime {
				lifetime = time.Duration(m) * time.Second
			}
			notBefore := time.Now().Add(-time.Minute).Truncate(time.Second)
			notAfter := notBefore.Add(lifetime)
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
			der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
				SerialNumber: serial, NotBefore: notBefore, NotAfter: notAfter,
				DNSNames:    []string{podName + "." + pcr.GetNamespace() + ".pod.test"},
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			}, ca.cert, pub, ca.key)
			if err != nil {
				t.Errorf("signing: %v", err)
				continue
			}
			chain := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(ca.certPEM)
			ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
			status := map[string]any{
				"certificateChain": chain,
				"notBefore":        ts(notBefore),
				"notAfter":         ts(notAfter),
				"beginRefreshAt":   ts(notAfter.Add(-30 * time.Minute)),
				"conditions": []any{map[string]any{
					"type": "Issued", "status": "True", "reason": "SmokeTestIssued",
					"message": "issued by the e2e smoke-test signer", "lastTransitionTime": ts(time.Now()),
				}},
			}
			pcr.Object["status"] = status
			if _, err := dyn.Resource(gvr).Namespace(pcr.GetNamespace()).UpdateStatus(ctx, pcr, metav1.UpdateOptions{}); err != nil {
				t.Logf("issuing %s/%s: %v", pcr.GetNamespace(), pcr.GetName(), err)
				continue
			}
			select {
			case issued <- pcr.GetName():
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pemTypes(b []byte) []string {
	var out []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, blk.Type)
	}
}

func getState(t *testing.T, c *cluster) State {
	resp, err := http.Get(c.ctlURL + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s State
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, timeout time.Duration, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := f()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
}

// checkBundle asserts kubelet's layout and content of a credential bundle:
// <dir>/<file> -> ..data/<file>, ..data -> ..<timestamp>, PRIVATE KEY then
// CERTIFICATE blocks.
func checkBundle(t *testing.T, dir, file string) []byte {
	t.Helper()
	link, err := os.Readlink(filepath.Join(dir, file))
	if err != nil || link != filepath.Join("..data", file) {
		t.Fatalf("%s/%s: want symlink to ..data/%s, got %q (%v)", dir, file, file, link, err)
	}
	data, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(data, "..") {
		t.Fatalf("%s/..data: want symlink to a ..<timestamp> dir, got %q (%v)", dir, data, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, data, file)); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("payload file %s/%s/%s: %v", dir, data, file, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	types := pemTypes(b)
	if len(types) < 2 || types[0] != "PRIVATE KEY" {
		t.Fatalf("credential bundle PEM blocks = %v, want PRIVATE KEY followed by CERTIFICATE(s)", types)
	}
	for _, ty := range types[1:] {
		if ty != "CERTIFICATE" {
			t.Fatalf("credential bundle PEM blocks = %v, want PRIVATE KEY followed by CERTIFICATE(s)", types)
		}
	}
	return b
}

func leafOf(t *testing.T, bundle []byte) *x509.Certificate {
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			t.Fatal("no certificate in bundle")
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t0 := time.Now()
	c, err := startCluster(ctx, options{StateDir: t.TempDir(), Nodes: []string{"smoke-node"}, SyncPeriod: 2 * time.Second})
	if err != nil {
		t.Fatalf("starting cluster: %v", err)
	}
	defer c.stop()
	t.Logf("cluster up in %v: %s (k8s %s)", time.Since(t0), c.api.url, k8sVersion)

	dyn := dynamic.NewForConfigOrDie(c.adminCfg)
	pcrGVR := schema.GroupVersionResource{Group: "certificates.k8s.io", Version: pcrVersion, Resource: "podcertificaterequests"}
	ctbGVR := schema.GroupVersionResource{Group: "certificates.k8s.io", Version: ctbVersion, Resource: "clustertrustbundles"}
	signerName := "smoke.podtls.test/signer"
	ca := newTestCA(t)
	issued := make(chan string, 100)
	go runTestSigner(ctx, t, dyn, pcrGVR, signerName, ca, issued)

	// A signer-linked ClusterTrustBundle carrying the test CA.
	ctb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "certificates.k8s.io/" + ctbVersion, "kind": "ClusterTrustBundle",
		"metadata": map[string]any{"name": "smoke.podtls.test:signer:primary", "labels": map[string]any{"smoke": "yes"}},
		"spec":     map[string]any{"signerName": signerName, "trustBundle": string(ca.certPEM)},
	}}
	if _, err := dyn.Resource(ctbGVR).Create(ctx, ctb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterTrustBundle: %v", err)
	}

	ns := "smoke"
	if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The serviceaccount controller creates "default"; pods need it.
	waitFor(t, "default ServiceAccount", 30*time.Second, func() (bool, error) {
		_, err := c.admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: ns, Labels: map[string]string{"app": "workload"}},
		Spec: corev1.PodSpec{
			NodeName:   "smoke-node",
			Containers: []corev1.Container{{Name: "main", Image: "example.invalid/none", VolumeMounts: []corev1.VolumeMount{{Name: "identity", MountPath: "/var/run/identity"}}}},
			Volumes: []corev1.Volume{{
				Name: "identity",
				VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{PodCertificate: &corev1.PodCertificateProjection{SignerName: signerName, KeyType: "ECDSAP256", CredentialBundlePath: "credentialbundle.pem"}},
					{PodCertificate: &corev1.PodCertificateProjection{SignerName: signerName, KeyType: "ED25519", KeyPath: "tls.key", CertificateChainPath: "tls.crt"}},
					{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
						SignerName: &signerName, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"smoke": "yes"}}, Path: "trust-bundle.pem",
					}},
				}}},
			}},
		},
	}
	pod, err = c.admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}

	resp, err := http.Get(fmt.Sprintf("%s/pod?namespace=%s&pod=%s&wait=60s", c.ctlURL, ns, pod.Name))
	if err != nil {
		t.Fatal(err)
	}
	var ps podStatus
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /pod?wait: %d %v %+v", resp.StatusCode, err, ps)
	}
	resp.Body.Close()
	if len(ps.Certificates) != 2 || ps.UID != string(pod.UID) {
		t.Fatalf("unexpected pod status %+v", ps)
	}
	for _, cs := range ps.Certificates {
		if !cs.Ready || cs.ChainLength != 2 {
			t.Fatalf("unexpected certificate status %+v", cs)
		}
	}
	dir := ps.Volumes["identity"]
	// keyPath + certificateChainPath: key and chain in separate files.
	key, err1 := os.ReadFile(filepath.Join(dir, "tls.key"))
	chain, err2 := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err1 != nil || err2 != nil || fmt.Sprint(pemTypes(key)) != "[PRIVATE KEY]" || fmt.Sprint(pemTypes(chain)) != "[CERTIFICATE CERTIFICATE]" {
		t.Fatalf("tls.key %v / tls.crt %v: got %v / %v", err1, err2, pemTypes(key), pemTypes(chain))
	}
	wantDir := filepath.Join(c.kubelets["smoke-node"].root, "pods", string(pod.UID), "volumes", "kubernetes.io~projected", "identity")
	if dir != wantDir {
		t.Errorf("volume dir = %s, want kubelet layout %s", dir, wantDir)
	}
	first := checkBundle(t, dir, "credentialbundle.pem")
	leaf1 := leafOf(t, first)
	if err := leaf1.CheckSignatureFrom(ca.cert); err != nil {
		t.Errorf("leaf not signed by test CA: %v", err)
	}
	tb, err := os.ReadFile(filepath.Join(dir, "trust-bundle.pem"))
	if err != nil || !bytes.Contains(tb, bytes.TrimSpace(ca.certPEM)) {
		t.Errorf("trust-bundle.pem does not carry the CTB's CA (err %v):\n%s", err, tb)
	}
	// A denied PCR: the manager records the denial, the volume is never
	// written, kubelet's Warning event lands on the pod.
	denied := pod.DeepCopy()
	denied.ObjectMeta = metav1.ObjectMeta{Name: "denied", Namespace: ns}
	denied.Status = corev1.PodStatus{}
	denied.Spec.Volumes = denied.Spec.Volumes[:1]
	denied.Spec.Volumes[0].Projected.Sources = []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
		SignerName: signerName + "-deny", KeyType: "ED25519", KeyPath: "key.pem", CertificateChainPath: "chain.pem"}}}
	denied.Spec.Containers[0].VolumeMounts = denied.Spec.Containers[0].VolumeMounts[:1]
	denied, err = c.admin.CoreV1().Pods(ns).Create(ctx, denied, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitFor(t, "denial reported", 30*time.Second, func() (bool, error) {
		for _, p := range getState(t, c).Pods {
			if p.UID == string(denied.UID) && len(p.Certificates) == 1 && strings.Contains(p.Certificates[0].Error, "denied") {
				if p.VolumesReady {
					return false, fmt.Errorf("volume of a denied pod set up")
				}
				return true, nil
			}
		}
		return false, nil
	})
	waitFor(t, "Denied event on the pod", 30*time.Second, func() (bool, error) {
		evs, err := c.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=denied"})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "Denied" && e.Source.Component == "kubelet" {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events, none from kubelet with reason Denied", len(evs.Items))
	})

	// The stand-in reports the pod running, as kubelet would.
	waitFor(t, "pod Running", 20*time.Second, func() (bool, error) {
		p, err := c.admin.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP == "127.0.0.1", err
	})
	// A CA added to the ClusterTrustBundle shows up in the projected trust
	// bundle (CTB watch -> resync -> kubelet's CTB manager -> AtomicWriter).
	ca2 := newTestCA(t)
	cur, err := dyn.Resource(ctbGVR).Get(ctx, ctb.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(cur.Object, string(ca.certPEM)+string(ca2.certPEM), "spec", "trustBundle")
	if _, err := dyn.Resource(ctbGVR).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating ClusterTrustBundle: %v", err)
	}
	waitFor(t, "second CA in trust-bundle.pem", 20*time.Second, func() (bool, error) {
		tb, err := os.ReadFile(filepath.Join(dir, "trust-bundle.pem"))
		return err == nil && bytes.Contains(tb, bytes.TrimSpace(ca2.certPEM)) && bytes.Contains(tb, bytes.TrimSpace(ca.certPEM)), err
	})

	// The state file on disk says the same.
	var onDisk State
	if b, err := os.ReadFile(c.statePath); err != nil || json.Unmarshal(b, &onDisk) != nil || onDisk.Kubeconfig == "" || onDisk.ControlURL != c.ctlURL {
		t.Errorf("state.json unreadable or incomplete: %v", err)
	}

	// Forced refresh: new key, new PCR, new certificate, files rewritten.
	refresh := func(label string) []byte {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("%s/refresh?namespace=%s&pod=%s&wait=60s", c.ctlURL, ns, pod.Name), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: /refresh returned %d: %s", label, resp.StatusCode, body)
		}
		return checkBundle(t, dir, "credentialbundle.pem")
	}
	second := refresh("first refresh")
	if bytes.Equal(first, second) {
		t.Fatal("credential bundle unchanged after forced refresh")
	}
	leaf2 := leafOf(t, second)
	if leaf1.SerialNumber.Cmp(leaf2.SerialNumber) == 0 || bytes.Equal(leaf1.RawSubjectPublicKeyInfo, leaf2.RawSubjectPublicKeyInfo) {
		t.Error("refresh did not produce a new key and certificate")
	}

	// kube-apiserver restart: etcd keeps the data, the stand-in's watches
	// recover, and a refresh still goes end to end.
	resp, err = http.Post(c.ctlURL+"/restart-apiserver", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("restart-apiserver: %v %v", err, resp)
	}
	resp.Body.Close()
	if _, err := c.admin.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("pod lost across apiserver restart: %v", err)
	}
	third := refresh("refresh after apiserver restart")
	if bytes.Equal(second, third) {
		t.Fatal("credential bundle unchanged after refresh following apiserver restart")
	}
	if s := getState(t, c); s.APIServerRestarts != 1 {
		t.Errorf("apiServerRestarts = %d, want 1", s.APIServerRestarts)
	}

	// The manager's own refresh path: jump its clock past beginRefreshAt
	// (notAfter-30m of a 2h certificate, + up to 5m jitter).
	resp, err = http.Post(c.ctlURL+"/advance-clock?node=smoke-node&by=100m&hold=5s", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("advance-clock: %v %v", err, resp)
	}
	resp.Body.Close()
	var fourth []byte
	waitFor(t, "refresh at beginRefreshAt", 60*time.Second, func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, "credentialbundle.pem"))
		if err != nil || bytes.Equal(b, third) {
			return false, err
		}
		fourth = b
		return true, nil
	})
	checkBundle(t, dir, "credentialbundle.pem")
	if leafOf(t, fourth).SerialNumber.Cmp(leafOf(t, third).SerialNumber) == 0 {
		t.Error("no new certificate after advancing the clock")
	}
}
