package main

// Interop: a certificate issued by podtls' pod-identity signer (Rust), decoded the
// way the PodIdentity prototype (kubernetes PR 121596, package kubernetesx509) does:
// encoding/asn1 into a struct of seven strings tagged `asn1:"utf8"`. The fixture is
// written by the signer's test `go_interop_fixture_is_current`, which fails when the
// Rust encoding no longer matches it (regenerate with PODTLS_UPDATE_FIXTURES=1).
// Standard library only.

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"testing"
)

// The prototype's wire struct (field order and tags as in kubernetesx509).
type prototypePodIdentityASN1 struct {
	Namespace          string `asn1:"utf8"`
	ServiceAccountName string `asn1:"utf8"`
	ServiceAccountUID  string `asn1:"utf8"`
	PodName            string `asn1:"utf8"`
	PodUID             string `asn1:"utf8"`
	NodeName           string `asn1:"utf8"`
	NodeUID            string `asn1:"utf8"`
}

var (
	oidPodIdentity       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57683, 1}
	oidSubjectInfoAccess = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 11}
)

// One AccessDescription, both parts raw (the access method's arc does not fit an int).
type accessDescription struct {
	Method   asn1.RawValue
	Location asn1.RawValue
}

func readPEM(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("%s holds no certificate", path)
	}
	return certs
}

func TestPodIdentityExtensionDecodesWithThePrototypesStruct(t *testing.T) {
	leaf := readPEM(t, "testdata/pod-identity/leaf.pem")[0]
	root := readPEM(t, "testdata/pod-identity/root.pem")[0]

	// crypto/x509 accepts the chain: the non-critical extensions it does not know
	// are ignored, and the leaf is usable for both TLS roles.
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: leaf.NotBefore.Add(60e9),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("crypto/x509 refuses the chain: %v", err)
	}

	var found []asn1.RawValue
	var critical []bool
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidPodIdentity) {
			found = append(found, asn1.RawValue{FullBytes: ext.Value})
			critical = append(critical, ext.Critical)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one PodIdentity extension, got %d", len(found))
	}
	if critical[0] {
		t.Errorf("the PodIdentity extension is critical; the prototype's is not")
	}
	var got prototypePodIdentityASN1
	rest, err := asn1.Unmarshal(found[0].FullBytes, &got)
	if err != nil {
		t.Fatalf("encoding/asn1 cannot decode our PodIdentity: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("%d bytes after the PodIdentity SEQUENCE", len(rest))
	}
	want := prototypePodIdentityASN1{
		Namespace:          "shop",
		ServiceAccountName: "web",
		ServiceAccountUID:  "5f0c3b9e-4c6e-4f43-8a51-1f5a2c9d0e11",
		PodName:            "web-0",
		PodUID:             "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10",
		NodeName:           "node-1",
		NodeUID:            "9a1d2e3f-0b4c-4d5e-8f60-7a8b9c0d1e2f",
	}
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	// Re-encoded by Go, it is byte for byte what the signer wrote.
	again, err := asn1.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(found[0].FullBytes) {
		t.Errorf("Go encodes %x, the signer wrote %x", again, found[0].FullBytes)
	}

	// The issuing cluster, in Subject Information Access, read with the standard
	// library: one AccessDescription, our UUID access method, a [6] URI.
	if got, want := len(leaf.URIs), 1; got != want {
		t.Fatalf("%d URI SANs, want %d (X509-SVID)", got, want)
	}
	var sia []byte
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidSubjectInfoAccess) {
			if ext.Critical {
				t.Errorf("Subject Information Access is critical (RFC 5280: MUST NOT)")
			}
			sia = ext.Value
		}
	}
	var entries []accessDescription
	if _, err := asn1.Unmarshal(sia, &entries); err != nil {
		t.Fatalf("Subject Information Access: %v", err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d access descriptions, want 1", len(entries))
	}
	var method x509.OID
	if entries[0].Method.Tag != asn1.TagOID {
		t.Fatalf("access method tag %d", entries[0].Method.Tag)
	}
	if err := method.UnmarshalBinary(entries[0].Method.Bytes); err != nil {
		t.Fatalf("access method: %v", err)
	}
	if got, want := method.String(), "2.25.288953363392044863347521704628287133871"; got != want {
		t.Errorf("access method %s, want %s", got, want)
	}
	loc := entries[0].Location
	if loc.Class != asn1.ClassContextSpecific || loc.Tag != 6 || loc.IsCompound {
		t.Errorf("location is not a [6] URI: class %d tag %d", loc.Class, loc.Tag)
	}
	if got, want := string(loc.Bytes), "https://kubernetes.default.svc.cluster.local"; got != want {
		t.Errorf("issuer %q, want %q", got, want)
	}
}
