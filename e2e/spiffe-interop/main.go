// spiffe-interop: go-spiffe v2's federation package against the podtls signer's bundle
// endpoint and fetcher. Driven by the signer's cargo test tests/spiffe_interop.rs.
//
//	spiffe-interop fetch -url URL -td TD (-web-ca PEM | -spiffe-id ID -bundle PEM)
//	    federation.FetchBundle; prints {"authorities": [base64 DER], "sequence": N}
//	spiffe-interop serve -td TD -profile web|spiffe -dir DIR
//	    federation.NewHandler over HTTPS on 127.0.0.1; writes DIR/td-ca.pem (the trust
//	    domain's CA) and DIR/web-ca.pem (web profile); prints "LISTEN <port>"; serves
//	    until standard input closes.
//	spiffe-interop workload-api -workload ID=SOCKET ...
//	    a SPIFFE Workload API server on unix sockets, minting and rotating SVIDs
//	    (workload_api.go; podtls' tests/workload_api.rs).
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: spiffe-interop fetch|serve|workload-api ...")
	}
	switch os.Args[1] {
	case "fetch":
		fetch(os.Args[2:])
	case "serve":
		serve(os.Args[2:])
	case "workload-api":
		workloadAPI(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

func fetch(args []string) {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	u := fs.String("url", "", "bundle endpoint URL")
	tdName := fs.String("td", "", "trust domain")
	webCA := fs.String("web-ca", "", "PEM roots for https_web")
	endpointID := fs.String("spiffe-id", "", "endpoint SPIFFE ID for https_spiffe")
	bundlePath := fs.String("bundle", "", "PEM bundle of the trust domain for https_spiffe")
	_ = fs.Parse(args)
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		fail(err.Error())
	}
	var opt federation.FetchOption
	if *webCA != "" {
		pemBytes, err := os.ReadFile(*webCA)
		if err != nil {
			fail(err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			fail("no certificates in " + *webCA)
		}
		opt = federation.WithWebPKIRoots(pool)
	} else {
		id, err := spiffeid.FromString(*endpointID)
		if err != nil {
			fail(err.Error())
		}
		b, err := x509bundle.Load(td, *bundlePath)
		if err != nil {
			fail(err.Error())
		}
		opt = federation.WithSPIFFEAuth(b, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bundle, err := federation.FetchBundle(ctx, td, *u, opt)
	if err != nil {
		fail("FetchBundle: " + err.Error())
	}
	out := struct {
		Authorities []string `json:"authorities"`
		Sequence    *uint64  `json:"sequence,omitempty"`
		RefreshHint float64  `json:"refreshHintSeconds"`
	}{}
	for _, c := range bundle.X509Authorities() {
		out.Authorities = append(out.Authorities, base64.StdEncoding.EncodeToString(c.Raw))
	}
	if seq, ok := bundle.SequenceNumber(); ok {
		out.Sequence = &seq
	}
	if hint, ok := bundle.RefreshHint(); ok {
		out.RefreshHint = hint.Seconds()
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err.Error())
	}
	return k
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		fail(err.Error())
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		fail(err.Error())
	}
	return c
}

func caTemplate(name string, uris []*url.URL) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		URIs:                  uris,
	}
}

func writePEM(path string, certs ...*x509.Certificate) {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		fail(err.Error())
	}
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	tdName := fs.String("td", "", "trust domain")
	profile := fs.String("profile", "web", "web or spiffe")
	dir := fs.String("dir", "", "output directory")
	_ = fs.Parse(args)
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		fail(err.Error())
	}
	tdKey := newKey()
	tdTmpl := caTemplate("go-spiffe interop CA "+td.Name(), []*url.URL{td.ID().URL()})
	tdCA := sign(tdTmpl, tdTmpl, tdKey.Public(), tdKey)
	writePEM(filepath.Join(*dir, "td-ca.pem"), tdCA)

	// A SPIRE-like bundle: an X.509 authority, a JWT authority, sequence and hint.
	bundle := spiffebundle.FromX509Authorities(td, []*x509.Certificate{tdCA})
	if err := bundle.AddJWTAuthority("jwt-key-1", newKey().Public()); err != nil {
		fail(err.Error())
	}
	bundle.SetSequenceNumber(42)
	bundle.SetRefreshHint(300 * time.Second)
	handler, err := federation.NewHandler(td, bundle)
	if err != nil {
		fail(err.Error())
	}

	leafKey := newKey()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	var chain *x509.Certificate
	switch *profile {
	case "web":
		webKey := newKey()
		webTmpl := caTemplate("go-spiffe interop web CA", nil)
		webCA := sign(webTmpl, webTmpl, webKey.Public(), webKey)
		writePEM(filepath.Join(*dir, "web-ca.pem"), webCA)
		leaf.DNSNames = []string{"localhost"}
		leaf.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		chain = sign(leaf, webCA, leafKey.Public(), webKey)
	case "spiffe":
		id, _ := spiffeid.FromPath(td, "/go-endpoint")
		leaf.URIs = []*url.URL{id.URL()}
		chain = sign(leaf, tdCA, leafKey.Public(), tdKey)
	default:
		fail("unknown profile " + *profile)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err.Error())
	}
	srv := &http.Server{
		Handler: handler,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{
			Certificate: [][]byte{chain.Raw}, PrivateKey: leafKey, Leaf: chain,
		}}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Printf("LISTEN %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil {
		fail(err.Error())
	}
}
