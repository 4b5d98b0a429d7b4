package main

// kube-apiserver is the real command (k8s.io/kubernetes/cmd/kube-apiserver/app
// .NewAPIServerCommand) compiled into this binary and run as a child process:
// the binary re-executes itself with PODTLS_TESTCLUSTER_ROLE=kube-apiserver.
// A child process (rather than the in-process TestServer from
// cmd/kube-apiserver/app/testing) gives a fixed port across restarts, real
// flag parsing, process-global state (feature gates, metrics) that starts
// fresh on every restart, and restarts that drop every connection and watch
// exactly like a real apiserver restart -- while etcd, in the parent process,
// keeps all data.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const roleEnv = "PODTLS_TESTCLUSTER_ROLE"

// maybeRunAPIServer runs kube-apiserver and exits if this process is the
// apiserver child. Called first thing from main() and TestMain().
func maybeRunAPIServer() {
	if os.Getenv(roleEnv) != "kube-apiserver" {
		return
	}
	cmd := app.NewAPIServerCommand()
	args := []string{}
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.") { // when re-executed from a go test binary
			continue
		}
		args = append(args, a)
	}
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}

type apiServer struct {
	args    []string
	logPath string
	url     string
	admin   kubernetes.Interface

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	restarts int
}

func apiServerArgs(p *pki, etcdURL string, port int, dir string, podCertificates bool) []string {
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + p.Serving.CertFile,
		"--tls-private-key-file=" + p.Serving.KeyFile,
		"--client-ca-file=" + p.CA.CertFile,
		"--service-account-key-file=" + p.SAPubFile,
		"--service-account-signing-key-file=" + p.SAKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.0.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		// The "kubernetes" Service's Endpoints may not point at loopback.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	if !podCertificates {
		return args
	}
	return append(args, apiserverVersionArgs...)
}

func (a *apiServer) start(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, a.args...)
	cmd.Env = append(os.Environ(), roleEnv+"=kube-apiserver")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the parent, even on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting kube-apiserver: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	a.mu.Lock()
	a.cmd, a.exited = cmd, exited
	a.mu.Unlock()

	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver exited during start-up (%v); see %s", cmd.ProcessState, a.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := a.admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after 3m (last: %v); see %s", err, a.logPath)
		}
	}
}

// stop sends SIGTERM (graceful shutdown), then SIGKILL after 5s: in these
// releases graceful termination stops listening at once but can then hang on
// open watch connections for a long time, which only slows the tests down.
// With kill, SIGKILL is sent straight away (a crash).
func (a *apiServer) stop() { a.stopWith(false) }

func (a *apiServer) stopWith(kill bool) {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	if kill {
		_ = cmd.Process.Kill()
		<-exited
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		klog.InfoS("kube-apiserver did not exit within 5s of SIGTERM, killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (a *apiServer) restart(ctx context.Context, down time.Duration, kill bool) error {
	a.stopWith(kill)
	a.mu.Lock()
	a.restarts++
	a.mu.Unlock()
	if down > 0 {
		select {
		case <-time.After(down):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return a.start(ctx)
}

func (a *apiServer) pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}
