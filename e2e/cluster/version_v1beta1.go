//go:build !k8s137

package main

// Kubernetes 1.35.x and 1.36.x: PodCertificateRequest and ClusterTrustBundle
// are beta (certificates.k8s.io/v1beta1), off by default: feature gates plus
// per-resource runtime-config. The PCR spec carries pkixPublicKey +
// proofOfPossession (1.35) or stubPKCS10Request (1.36, pkix fields
// deprecated). The release itself is named in release_13[56].go.

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformersv1 "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"k8s.io/kubernetes/pkg/controller/certificates/cleaner"
	"k8s.io/kubernetes/pkg/kubelet/podcertificate"
)

const (
	pcrVersion = "v1beta1"
	ctbVersion = "v1beta1"
)

var featureGates = map[string]bool{
	"PodCertificateRequest":        true,
	"ClusterTrustBundle":           true,
	"ClusterTrustBundleProjection": true,
}

var apiserverVersionArgs = []string{
	"--feature-gates=PodCertificateRequest=true,ClusterTrustBundle=true,ClusterTrustBundleProjection=true",
	"--runtime-config=certificates.k8s.io/v1beta1/podcertificaterequests=true,certificates.k8s.io/v1beta1/clustertrustbundles=true",
}

// newIssuingManager builds the manager exactly as pkg/kubelet/kubelet.go does
// in 1.35 and 1.36 (v1beta1 PCR informer from a spec.nodeName-filtered factory).
func newIssuingManager(kc kubernetes.Interface, pm podcertificate.PodManager, rec record.EventRecorder, byNode informers.SharedInformerFactory, nodes coreinformersv1.NodeInformer, nodeName types.NodeName, clk clock.WithTicker) (*podcertificate.IssuingManager, cache.SharedIndexInformer) {
	pcrs := byNode.Certificates().V1beta1().PodCertificateRequests()
	return podcertificate.NewIssuingManager(kc, pm, rec, pcrs, nodes, nodeName, clk), pcrs.Informer()
}

// runPCRCleaner runs kube-controller-manager's podcertificaterequest-cleaner
// controller (deletes PCRs 15 minutes after creation, like the real one).
func runPCRCleaner(ctx context.Context, client kubernetes.Interface, f informers.SharedInformerFactory) {
	c := cleaner.NewPCRCleanerController(client, f.Certificates().V1beta1().PodCertificateRequests(), clock.RealClock{}, 15*time.Minute, 5*time.Minute) // same as kube-controller-manager
	go c.Run(ctx, 1)
}

func (h *volumeHost) GetTrustAnchorsByName(name string, allowMissing bool) ([]byte, error) {
	return h.k.ctbm.GetTrustAnchorsByName(name, allowMissing)
}

func (h *volumeHost) GetTrustAnchorsBySigner(signerName string, labelSelector *metav1.LabelSelector, allowMissing bool) ([]byte, error) {
	return h.k.ctbm.GetTrustAnchorsBySigner(signerName, labelSelector, allowMissing)
}
