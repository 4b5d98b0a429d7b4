//go:build k8s137

package main

// Kubernetes 1.37.x: PodCertificateRequest, ClusterTrustBundle and
// ClusterTrustBundleProjection are GA (certificates.k8s.io/v1), served and
// enabled by default. The PCR spec carries stubPKCS10Request.

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
	k8sVersion = "1.37.2"
	pcrVersion = "v1"
	ctbVersion = "v1"
)

var featureGates = map[string]bool{}

var apiserverVersionArgs = []string{}

// newIssuingManager builds the manager exactly as pkg/kubelet/kubelet.go does
// in 1.37 (v1 PCR informer from a spec.nodeName-filtered factory).
func newIssuingManager(kc kubernetes.Interface, pm podcertificate.PodManager, rec record.EventRecorder, byNode informers.SharedInformerFactory, nodes coreinformersv1.NodeInformer, nodeName types.NodeName, clk clock.WithTicker) (*podcertificate.IssuingManager, cache.SharedIndexInformer) {
	pcrs := byNode.Certificates().V1().PodCertificateRequests()
	return podcertificate.NewIssuingManager(kc, pm, rec, pcrs, nodes, nodeName, clk), pcrs.Informer()
}

// runPCRCleaner runs kube-controller-manager's podcertificaterequest-cleaner
// controller (deletes PCRs 15 minutes after creation, like the real one).
func runPCRCleaner(ctx context.Context, client kubernetes.Interface, f informers.SharedInformerFactory) {
	c := cleaner.NewPCRCleanerController(client, f.Certificates().V1().PodCertificateRequests(), clock.RealClock{}, 15*time.Minute, 5*time.Minute) // same as kube-controller-manager
	go c.Run(ctx, 1)
}

func (h *volumeHost) GetTrustAnchorsByName(ctx context.Context, name string, allowMissing bool) ([]byte, error) {
	return h.k.ctbm.GetTrustAnchorsByName(ctx, name, allowMissing)
}

func (h *volumeHost) GetTrustAnchorsBySigner(ctx context.Context, signerName string, labelSelector *metav1.LabelSelector, allowMissing bool) ([]byte, error) {
	return h.k.ctbm.GetTrustAnchorsBySigner(ctx, signerName, labelSelector, allowMissing)
}
