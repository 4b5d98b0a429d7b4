// Command meshtool-pool writes a CA pool exactly as the original Go meshtool's
// `make-ca-pool-secret` builds it (lib/localca: GenerateED25519CA + Marshal: Ed25519
// key, empty Subject, no ActiveForSigning), to produce ../meshtool-pool.json.
//
// With -verify POOL LEAF_PEM it instead reads a pool the way localca.Unmarshal does,
// takes CAs[0], and verifies LEAF_PEM (a chain issued by the Rust signer) against it
// with crypto/x509, for both EKUs.
//
// With -requests it writes ../kubelet-requests.json: for every Kubernetes key type, a
// PKIX public key, a proof of possession over a pod UID made as kubelet makes it
// (ed25519.Sign; ecdsa.SignASN1 over SHA-256; rsa.SignPSS(SHA-256, nil options)), and a
// stub PKCS#10 request from x509.CreateCertificateRequest.
//
// Run (standard library only): GO111MODULE=off go run main.go > ../meshtool-pool.json
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

type serializedCA struct {
	ID                          string
	SigningKeyPKCS8             []byte
	RootCertificateDER          []byte
	IntermediateCertificatesDER [][]byte
}

type serializedPool struct {
	CAs []*serializedCA
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-requests" {
		requests()
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "-verify" {
		if err := verify(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("OK")
		return
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	notBefore := time.Now()
	tmpl := &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(100 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	must(err)
	key, err := x509.MarshalPKCS8PrivateKey(priv)
	must(err)
	out, err := json.Marshal(&serializedPool{CAs: []*serializedCA{{ID: "1", SigningKeyPKCS8: key, RootCertificateDER: der}}})
	must(err)
	fmt.Println(string(out))
}

func verify(poolPath, leafPath string) error {
	poolBytes, err := os.ReadFile(poolPath)
	if err != nil {
		return err
	}
	wire := &serializedPool{}
	if err := json.Unmarshal(poolBytes, wire); err != nil {
		return err
	}
	roots := x509.NewCertPool()
	for _, ca := range wire.CAs {
		if _, err := x509.ParsePKCS8PrivateKey(ca.SigningKeyPKCS8); err != nil {
			return fmt.Errorf("CA %q key: %w", ca.ID, err)
		}
		root, err := x509.ParseCertificate(ca.RootCertificateDER)
		if err != nil {
			return fmt.Errorf("CA %q root: %w", ca.ID, err)
		}
		roots.AddCert(root)
	}
	chain, err := os.ReadFile(leafPath)
	if err != nil {
		return err
	}
	block, rest := pem.Decode(chain)
	if block == nil {
		return fmt.Errorf("no PEM in %s", leafPath)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	inters := x509.NewCertPool()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return err
		}
		inters.AddCert(c)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			return fmt.Errorf("verify (EKU %v): %w", eku, err)
		}
	}
	return nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

type kubeletRequest struct {
	KeyType           string
	PodUID            string
	PKIXPublicKey     []byte
	ProofOfPossession []byte
	StubPKCS10Request []byte
}

func requests() {
	const podUID = "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10"
	hash := sha256.Sum256([]byte(podUID))
	var out []kubeletRequest
	for _, kt := range []string{"RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519"} {
		var signer crypto.Signer
		var pop []byte
		switch kt {
		case "RSA3072", "RSA4096":
			bits := 3072
			if kt == "RSA4096" {
				bits = 4096
			}
			k, err := rsa.GenerateKey(rand.Reader, bits)
			must(err)
			pop, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, hash[:], nil)
			must(err)
			signer = k
		case "ECDSAP256", "ECDSAP384", "ECDSAP521":
			curve := map[string]elliptic.Curve{"ECDSAP256": elliptic.P256(), "ECDSAP384": elliptic.P384(), "ECDSAP521": elliptic.P521()}[kt]
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			must(err)
			pop, err = ecdsa.SignASN1(rand.Reader, k, hash[:])
			must(err)
			signer = k
		case "ED25519":
			_, k, err := ed25519.GenerateKey(rand.Reader)
			must(err)
			pop = ed25519.Sign(k, []byte(podUID))
			signer = k
		}
		pkix, err := x509.MarshalPKIXPublicKey(signer.Public())
		must(err)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, signer)
		must(err)
		out = append(out, kubeletRequest{KeyType: kt, PodUID: podUID, PKIXPublicKey: pkix, ProofOfPossession: pop, StubPKCS10Request: csr})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	must(err)
	fmt.Println(string(b))
}
