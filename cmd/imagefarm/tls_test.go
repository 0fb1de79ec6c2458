package main

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// clearTLSEnv keeps the environment's TLS settings out of a test.
func clearTLSEnv(t *testing.T) {
	for _, k := range []string{"IMAGEFARM_CA", "IMAGEFARM_TLS_CERT", "IMAGEFARM_TLS_KEY", "IMAGEFARM_CLIENT_CA"} {
		t.Setenv(k, "")
	}
}

// serveTLS serves f with cfg on a loopback port and returns its address.
func serveTLS(t *testing.T, f imagefarmv1.ImageFarmServiceServer, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	imagefarmv1.RegisterImageFarmServiceServer(srv, f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// TestCAAndTheCLIOverTLS makes a CA and certificates with imagefarm ca,
// serves a farm with the controller's, and checks that the CLI verifies it
// against the CA and nothing else.
func TestCAAndTheCLIOverTLS(t *testing.T) {
	clearTLSEnv(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string // in the output
	}{
		{[]string{"ca", "init", "--dir", dir}, filepath.Join(dir, "ca.key") + "  mode 0600"},
		{[]string{"ca", "issue", "--dir", dir, "--controller", "--host", "127.0.0.1,ctl.lan"}, filepath.Join(dir, "controller.crt")},
		{[]string{"ca", "issue", "--dir", dir, "--node", "bench-3"}, "imagefarm://node/bench-3"},
		{[]string{"ca", "issue", "--dir", dir, "--client", "alice", "--out", filepath.Join(dir, "alice")}, filepath.Join(dir, "alice", "client-alice.key")},
	} {
		if out := mustRun(t, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("imagefarm %s printed\n%s\nwithout %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"ca", "init", "--dir", dir}, "never overwrites"},
		{[]string{"ca", "issue", "--dir", dir}, "node controller client"},
		{[]string{"ca", "issue", "--dir", dir, "--controller"}, "--controller needs --host"},
		{[]string{"ca", "issue", "--dir", dir, "--node", "a.b"}, `node id "a.b" has '.'`},
		{[]string{"ca", "issue", "--dir", t.TempDir(), "--node", "n1"}, "imagefarm ca init"},
	} {
		if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %s = %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	cfg, err := pki.ServerConfig(filepath.Join(dir, "controller.crt"), filepath.Join(dir, "controller.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, &fakeAPI{nodes: []*imagefarmv1.Node{{Id: "bench-3"}}}, cfg)
	ca := filepath.Join(dir, "ca.crt")
	other := testenv.NewPKI(t).CAFile()
	for _, tc := range []struct {
		name string
		args []string
		want string // in the output, or in the error when err
		err  bool
	}{
		{"the farm CA", []string{"--ca", ca}, "bench-3", false},
		{"the farm CA and a client certificate", []string{"--ca", ca, "--tls-cert", filepath.Join(dir, "alice", "client-alice.crt"),
			"--tls-key", filepath.Join(dir, "alice", "client-alice.key")}, "bench-3", false},
		{"no CA", nil, "imagefarm ca init", true},
		{"another farm's CA", []string{"--ca", other}, "certificate signed by unknown authority", true},
		{"a certificate without its key", []string{"--ca", ca, "--tls-cert", filepath.Join(dir, "node-bench-3.crt")}, "give both files or neither", true},
		{"plaintext", []string{"--insecure"}, "unavailable", true},
	} {
		out, err := run(t, append(tc.args, "--controller", addr, "nodes")...)
		if tc.err && (err == nil || !strings.Contains(err.Error(), tc.want)) || !tc.err && (err != nil || !strings.Contains(out, tc.want)) {
			t.Errorf("%s: imagefarm nodes = %v\n%s\nwant %q", tc.name, err, out, tc.want)
		}
	}
}

// TestServersNeedCertificatesOrInsecure checks that the controller and an
// imager do not start without their certificates, or with an imager's
// that is not its own, and say how to get them.
func TestServersNeedCertificatesOrInsecure(t *testing.T) {
	clearTLSEnv(t)
	p := testenv.NewPKI(t)
	node := func(r pki.Request) []string {
		cert, key := p.Issue(t, r)
		return []string{"--tls-cert", cert, "--tls-key", key}
	}
	store := "file://" + t.TempDir()
	imager := []string{"imager", "--node-id", "n1", "--controller", "127.0.0.1:1", "--store", store, "--ca", p.CAFile()}
	expired := pki.Request{Kind: pki.KindNode, Name: "n1", NotBefore: time.Now().Add(-48 * time.Hour), ValidFor: time.Hour}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"controller", "--nats", "nats://127.0.0.1:1", "--store", store}, "pass --tls-cert and --tls-key"},
		{[]string{"controller", "--nats", "nats://127.0.0.1:1", "--store", store, "--tls-cert", "c.crt", "--tls-key", "c.key"}, "--client-ca"},
		{imager, "imagefarm ca issue --dir DIR --node n1"},
		{append(imager, node(pki.Request{Kind: pki.KindNode, Name: "n2"})...), `the certificate of node "n2", not of node "n1"`},
		{append(imager, node(pki.Request{Kind: pki.KindClient, Name: "n1"})...), `the certificate of client "n1"`},
		{append(imager, node(expired)...), "expired"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %s = %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
		if err != nil && strings.Contains(tc.want, "tls-cert") && !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("imagefarm %s = %v, want it to name --insecure", strings.Join(tc.args, " "), err)
		}
	}
}
