package main

// The few kube-controller-manager controllers a pod-certificate test needs,
// run in-process from kube-controller-manager's own packages with the admin
// client:
//   - serviceaccount: creates the "default" ServiceAccount in new namespaces
//     (without it, the ServiceAccount admission plugin rejects pods);
//   - root-ca-cert-publisher: kube-root-ca.crt ConfigMaps, which the
//     automounted kube-api-access-* projected volumes read;
//   - namespace: lets Namespace deletion finish;
//   - podcertificaterequest-cleaner: deletes PCRs 15 minutes after creation
//     (only with the Pod Certificates API).
// Not run: scheduler (tests set spec.nodeName), garbage collector, endpoints.

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
	"k8s.io/kubernetes/pkg/controller/serviceaccount"
)

func runControllers(ctx context.Context, cfg *rest.Config, rootCA []byte, podCertificates bool) error {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "podtls-testcluster/controllers"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(client, 0)

	sac, err := serviceaccount.NewServiceAccountsController(klog.FromContext(ctx),
		f.Core().V1().ServiceAccounts(), f.Core().V1().Namespaces(), client,
		serviceaccount.DefaultServiceAccountsControllerOptions())
	if err != nil {
		return err
	}
	pub, err := rootcacertpublisher.NewPublisher(f.Core().V1().ConfigMaps(), f.Core().V1().Namespaces(), client, rootCA)
	if err != nil {
		return err
	}
	nsc := namespacecontroller.NewNamespaceController(ctx, client, md,
		client.Discovery().ServerPreferredNamespacedResources,
		f.Core().V1().Namespaces(), 5*time.Minute, v1.FinalizerKubernetes)
	if podCertificates {
		runPCRCleaner(ctx, client, f)
	}

	f.Start(ctx.Done())
	go sac.Run(ctx, 1)
	go pub.Run(ctx, 1)
	go nsc.Run(ctx, 2)
	return nil
}
