package main

// The `workload-api` command: a SPIFFE Workload API server built on go-spiffe's
// generated protos (google.golang.org/grpc), for podtls' WorkloadApiSource test.
//
//	spiffe-interop workload-api -workload ID=SOCKET [-workload ID=SOCKET ...] [-ttl 1h]
//
// Every -workload serves one X509-SVID with that SPIFFE ID on its own unix socket
// (SPIRE tells workloads apart by the caller's PID; a socket per workload keeps
// this server small). One CA per trust domain (a URI SAN naming the trust domain,
// as SPIRE's CAs carry); each workload gets its own trust domain's bundle and, as
// federated bundles, those of every other trust domain that is federated. Prints
// "READY" once every socket listens, then reads commands from standard input, one
// per line, each answered with one line once every open stream was sent the change:
//
//	rotate        new key and certificate for every workload
//	              -> "ROTATED <id>=<serial hex> ..." (big-endian, no leading zeros)
//	expire        like rotate, but the new certificates expired an hour ago
//	              -> "EXPIRED <id>=<serial hex> ..."
//	drop TD       stop sending TD as a federated bundle  -> "DROPPED TD"
//	add TD        send it again                         -> "ADDED TD"
//	serials       the current serials                    -> "SERIALS <id>=<serial> ..."
//
// Exits when standard input closes. Requests without the `workload.spiffe.io: true`
// metadata are refused with InvalidArgument, as SPIRE's agent does.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type workloadFlags []string

func (w *workloadFlags) String() string     { return strings.Join(*w, ",") }
func (w *workloadFlags) Set(v string) error { *w = append(*w, v); return nil }

type authority struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

type svid struct {
	cert *x509.Certificate
	key  []byte // PKCS#8 DER
}

type identity struct {
	id     spiffeid.ID
	socket string
}

// state is what every stream serves; `changed` is closed (and replaced) on every change.
type state struct {
	mu        sync.Mutex
	cas       map[spiffeid.TrustDomain]*authority
	svids     map[spiffeid.ID]*svid
	dropped   map[spiffeid.TrustDomain]bool
	ttl       time.Duration
	version   uint64
	changed   chan struct{}
	streams   map[uint64]uint64 // open stream -> version it last sent
	streamSeq atomic.Uint64
	sent      *sync.Cond
}

var serialSeq atomic.Int64

func nextSerial() *big.Int {
	return big.NewInt(time.Now().UnixNano() + serialSeq.Add(1))
}

func (s *state) mint(id spiffeid.ID) *svid {
	return s.mintValid(id, time.Now().Add(-time.Minute), time.Now().Add(s.ttl))
}

func (s *state) mintValid(id spiffeid.ID, notBefore, notAfter time.Time) *svid {
	ca := s.cas[id.TrustDomain()]
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "workload"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		// basicConstraints cA=false present, as SPIRE writes it (the Rust
		// `spiffe` crate requires the extension).
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
	}
	cert := sign(tmpl, ca.cert, key.Public(), ca.key)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		fail(err.Error())
	}
	return &svid{cert: cert, key: der}
}

// bump publishes a change (mu held) and waits until every open stream sent it.
func (s *state) bump() {
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	for {
		behind := false
		for _, v := range s.streams {
			if v < s.version {
				behind = true
			}
		}
		if !behind {
			return
		}
		s.sent.Wait()
	}
}

func (s *state) response(id spiffeid.ID) *workload.X509SVIDResponse {
	own := id.TrustDomain()
	sv := s.svids[id]
	resp := &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    id.String(),
			X509Svid:    sv.cert.Raw,
			X509SvidKey: sv.key,
			Bundle:      s.cas[own].cert.Raw,
		}},
		FederatedBundles: map[string][]byte{},
	}
	for td, ca := range s.cas {
		if td != own && !s.dropped[td] {
			resp.FederatedBundles[td.IDString()] = ca.cert.Raw
		}
	}
	return resp
}

func (s *state) serials() string {
	var out []string
	for id, sv := range s.svids {
		out = append(out, fmt.Sprintf("%s=%x", id, sv.cert.SerialNumber.Bytes()))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

type server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	st *state
	id spiffeid.ID
}

func (srv *server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	st := srv.st
	handle := st.streamSeq.Add(1)
	st.mu.Lock()
	st.streams[handle] = 0
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.streams, handle)
		st.sent.Broadcast()
		st.mu.Unlock()
	}()
	for {
		st.mu.Lock()
		resp, version, changed := st.response(srv.id), st.version, st.changed
		st.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
		st.mu.Lock()
		st.streams[handle] = version
		st.sent.Broadcast()
		st.mu.Unlock()
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func workloadAPI(args []string) {
	fs := flag.NewFlagSet("workload-api", flag.ExitOnError)
	var workloads workloadFlags
	fs.Var(&workloads, "workload", "SPIFFE_ID=SOCKET_PATH (repeatable)")
	ttl := fs.Duration("ttl", time.Hour, "SVID lifetime")
	_ = fs.Parse(args)
	if len(workloads) == 0 {
		fail("at least one -workload ID=SOCKET")
	}
	st := &state{
		cas:     map[spiffeid.TrustDomain]*authority{},
		svids:   map[spiffeid.ID]*svid{},
		dropped: map[spiffeid.TrustDomain]bool{},
		ttl:     *ttl,
		changed: make(chan struct{}),
		streams: map[uint64]uint64{},
	}
	st.sent = sync.NewCond(&st.mu)
	var ids []identity
	for _, w := range workloads {
		idText, socket, ok := strings.Cut(w, "=")
		if !ok {
			fail("-workload wants ID=SOCKET, got " + w)
		}
		id, err := spiffeid.FromString(idText)
		if err != nil {
			fail(err.Error())
		}
		td := id.TrustDomain()
		if st.cas[td] == nil {
			key := newKey()
			tmpl := caTemplate("workload-api interop CA "+td.Name(), []*url.URL{td.ID().URL()})
			tmpl.SerialNumber = nextSerial()
			tmpl.KeyUsage |= x509.KeyUsageCRLSign
			st.cas[td] = &authority{key: key, cert: sign(tmpl, tmpl, key.Public(), key)}
		}
		st.svids[id] = st.mint(id)
		ids = append(ids, identity{id: id, socket: socket})
	}
	for _, ident := range ids {
		_ = os.Remove(ident.socket)
		ln, err := net.Listen("unix", ident.socket)
		if err != nil {
			fail(err.Error())
		}
		g := grpc.NewServer()
		workload.RegisterSpiffeWorkloadAPIServer(g, &server{st: st, id: ident.id})
		go func() { _ = g.Serve(ln) }()
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(in.Text()), " ")
		st.mu.Lock()
		switch cmd {
		case "rotate":
			for id := range st.svids {
				st.svids[id] = st.mint(id)
			}
			st.bump()
			fmt.Println("ROTATED " + st.serials())
		case "expire":
			for id := range st.svids {
				st.svids[id] = st.mintValid(id, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
			}
			st.bump()
			fmt.Println("EXPIRED " + st.serials())
		case "drop", "add":
			td, err := spiffeid.TrustDomainFromString(arg)
			if err != nil || st.cas[td] == nil {
				fmt.Printf("ERROR unknown trust domain %q\n", arg)
				break
			}
			st.dropped[td] = cmd == "drop"
			st.bump()
			fmt.Printf("%s %s\n", map[string]string{"drop": "DROPPED", "add": "ADDED"}[cmd], td)
		case "serials":
			fmt.Println("SERIALS " + st.serials())
		default:
			fmt.Printf("ERROR unknown command %q\n", cmd)
		}
		st.mu.Unlock()
	}
	for _, ident := range ids {
		_ = os.Remove(ident.socket)
	}
}
