package main

// PKI for the test cluster: one CA that signs the kube-apiserver serving
// certificate and every client certificate (admin, nodes), plus the
// service-account token signing key. Everything is generated at start-up and
// written under <state-dir>/pki; nothing here is secret beyond the test run.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type keyPair struct {
	CertPEM  []byte
	KeyPEM   []byte
	CertFile string
	KeyFile  string
	cert     *x509.Certificate
	key      crypto.Signer
}

type pki struct {
	Dir        string
	CA         *keyPair
	Serving    *keyPair
	Admin      *keyPair
	SAKeyFile  string // private key (--service-account-signing-key-file)
	SAPubFile  string // public key (--service-account-key-file)
	nodeClient map[string]*keyPair
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n.Add(n, big.NewInt(1))
}

func (p *pki) issue(name string, tmpl *x509.Certificate) (*keyPair, error) {
	k, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	parent, signer := tmpl, crypto.Signer(k)
	if p.CA != nil {
		parent, signer = p.CA.cert, p.CA.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, k.Public(), signer)
	if err != nil {
		return nil, err
	}
	c, _ := x509.ParseCertificate(der)
	kp := &keyPair{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   keyPEM,
		CertFile: filepath.Join(p.Dir, name+".crt"),
		KeyFile:  filepath.Join(p.Dir, name+".key"),
		cert:     c,
		key:      k,
	}
	if err := os.WriteFile(kp.CertFile, kp.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(kp.KeyFile, kp.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return kp, nil
}

func newPKI(dir string, nodes []string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{Dir: dir, nodeClient: map[string]*keyPair{}}
	var err error
	p.CA, err = p.issue("ca", &x509.Certificate{
		Subject:               pkix.Name{CommonName: "podtls-testcluster-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	})
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	p.Serving, err = p.issue("apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}
	p.Admin, err = p.issue("admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "podtls-admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("admin cert: %w", err)
	}
	for _, n := range nodes {
		// Same identity kubelet gets from TLS bootstrap: CN=system:node:<name>,
		// O=system:nodes. The Node authorizer and NodeRestriction key off it.
		kp, err := p.issue("node-"+n, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "system:node:" + n, Organization: []string{"system:nodes"}},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return nil, fmt.Errorf("node cert: %w", err)
		}
		p.nodeClient[n] = kp
	}
	// Service-account token signing key (generated at start, as the issue asks).
	k, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	p.SAKeyFile = filepath.Join(dir, "sa.key")
	p.SAPubFile = filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(p.SAKeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.SAPubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// writeKubeconfig writes a kubeconfig with embedded credentials.
func writeKubeconfig(path, server string, ca []byte, user string, kp *keyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["podtls-testcluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["podtls-testcluster"] = &clientcmdapi.Context{Cluster: "podtls-testcluster", AuthInfo: user}
	cfg.CurrentContext = "podtls-testcluster"
	return clientcmd.WriteToFile(*cfg, path)
}
