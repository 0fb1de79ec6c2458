package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/wait"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a MinIO server process on 127.0.0.1 with a data folder of its own.
type MinIO struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	// CredentialsFile is an AWS shared credentials file holding the keys,
	// for store URLs (&credentials=FILE) that must not rely on the environment.
	CredentialsFile string
	Client          *minio.Client // an admin client, for setting up buckets
	cmd             *exec.Cmd
	dir             string
}

// MinIOBinary returns the path of the MinIO server binary, or an error
// saying how to install it.
func MinIOBinary() (string, error) {
	if p := os.Getenv("IMAGEFARM_MINIO"); p != "" {
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("minio server binary not found: run scripts/test.sh (it builds MinIO into .cache/bin) or set IMAGEFARM_MINIO")
}

// RepoRoot is the folder holding go.mod, found from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartMinIO starts a MinIO server with its data in dir and waits until it
// answers. Stop it with Stop.
func StartMinIO(dir string) (*MinIO, error) {
	bin, err := MinIOBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "imagefarm-test",
		SecretKey: "imagefarm-test-" + randomHex(8),
		dir:       dir,
	}
	m.cmd = exec.Command(bin, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", "127.0.0.1:0", filepath.Join(dir, "data"))
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, err
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio %s: %w", bin, err)
	}
	if err := m.setup(); err != nil {
		m.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
		return nil, fmt.Errorf("minio at %s: %w\n%s", m.Endpoint, err, log)
	}
	return m, nil
}

func (m *MinIO) setup() error {
	m.CredentialsFile = filepath.Join(m.dir, "credentials")
	creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", m.AccessKey, m.SecretKey)
	if err := os.WriteFile(m.CredentialsFile, []byte(creds), 0o600); err != nil {
		return err
	}
	var err error
	m.Client, err = minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := m.ready()
		if err == nil {
			return nil
		}
		if !wait.Sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("not ready after 60s: %w", err)
		}
	}
}

// ready reports whether the server serves S3 and STS: its health check
// passes before its IAM is up, while AssumeRole still answers "Server not
// initialized" (and ScopedURL would fail).
func (m *MinIO) ready() error {
	resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check: %s", resp.Status)
	}
	sts, err := credentials.NewSTSAssumeRole("http://"+m.Endpoint, credentials.STSAssumeRoleOptions{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err == nil {
		_, err = sts.Get()
	}
	if err != nil {
		return fmt.Errorf("assume role: %w", err)
	}
	return nil
}

// Stop kills the server and waits for it.
func (m *MinIO) Stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

// NewBucket creates a bucket with a fresh name and returns the store URL of
// a prefix in it, with credentials from m's credentials file.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	bucket := "t-" + randomHex(6)
	if err := m.Client.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
	return m.URL(bucket, "catalog")
}

// URL is the store URL of prefix in bucket on this server.
func (m *MinIO) URL(bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&insecure=true&credentials=%s", bucket, prefix, m.Endpoint, m.CredentialsFile)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}

// SharedMinIO is one MinIO server for a test package, started by the first
// test that asks for it, so fuzz workers and runs of tests that need no S3
// never start one. Main stops it.
type SharedMinIO struct {
	once sync.Once
	srv  *MinIO
	dir  string
	err  error
}

// Get returns the package's server, starting it on first use; without MinIO
// the test fails, saying how to install it.
func (s *SharedMinIO) Get(t testing.TB) *MinIO {
	t.Helper()
	s.once.Do(func() {
		if s.dir, s.err = os.MkdirTemp("", "imagefarm-minio-"); s.err == nil {
			s.srv, s.err = StartMinIO(s.dir)
		}
	})
	if s.err != nil {
		t.Fatalf("this test needs MinIO: %v", s.err)
	}
	return s.srv
}

// Main is a TestMain body: it runs the tests, stops the server if one was
// started, and exits.
func (s *SharedMinIO) Main(m *testing.M) {
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

// Stop stops the server if one was started and removes its data.
func (s *SharedMinIO) Stop() {
	if s.srv != nil {
		s.srv.Stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// ScopedURL is the store URL of prefix in bucket with temporary credentials
// that policy, an S3 IAM policy document, limits: those of a MinIO user
// with that policy attached, made with STS AssumeRole rather than the admin
// API. They are written to a credentials file with their session token.
func (m *MinIO) ScopedURL(t testing.TB, bucket, prefix, policy string) string {
	t.Helper()
	sts, err := credentials.NewSTSAssumeRole("http://"+m.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, Policy: policy, DurationSeconds: 12 * 3600,
	})
	if err != nil {
		t.Fatalf("assume role: %v", err)
	}
	v, err := sts.Get()
	if err != nil {
		t.Fatalf("assume role: %v", err)
	}
	file := filepath.Join(t.TempDir(), "credentials")
	creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n",
		v.AccessKeyID, v.SecretAccessKey, v.SessionToken)
	if err := os.WriteFile(file, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&insecure=true&credentials=%s", bucket, prefix, m.Endpoint, file)
}

// DeployPolicy is the S3 policy deploy/minio/name, written for the store
// s3://images/farm, made for prefix of bucket instead.
func DeployPolicy(t testing.TB, name, bucket, prefix string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile(filepath.Join(root, "deploy", "minio", name))
	if err != nil {
		t.Fatal(err)
	}
	p := strings.ReplaceAll(string(policy), "arn:aws:s3:::images/farm/", "arn:aws:s3:::"+bucket+"/"+prefix+"/")
	return strings.ReplaceAll(p, "arn:aws:s3:::images", "arn:aws:s3:::"+bucket)
}

// PolicyURL is storeURL, a store URL on m, with the credentials the
// policy deploy/minio/name gives: "imager-policy.json",
// "admin-policy.json" or "controller-policy.json".
func (m *MinIO) PolicyURL(t testing.TB, storeURL, name string) string {
	t.Helper()
	u, err := url.Parse(storeURL)
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	return m.ScopedURL(t, u.Host, prefix, DeployPolicy(t, name, u.Host, prefix))
}
