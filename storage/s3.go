package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// S3Store keeps objects in a bucket of an S3-compatible service, under a
// key prefix. Requests are retried with exponential backoff by minio-go.
type S3Store struct {
	client   *minio.Client
	endpoint string
	bucket   string
	prefix   string // "" or ending in "/"
}

// S3Config is everything NewS3Store needs.
type S3Config struct {
	Endpoint        string // HOST:PORT
	Bucket          string
	Prefix          string
	Insecure        bool   // plain HTTP instead of TLS
	Region          string // optional
	CredentialsFile string // AWS shared credentials file, used after the environment
	Profile         string // profile in CredentialsFile; AWS_PROFILE or "default" when empty
	Retries         int    // attempts per request; 0 means 5
}

func newS3FromURL(u *url.URL, opts Options) (*S3Store, error) {
	q := u.Query()
	cfg := S3Config{
		Endpoint:        q.Get("endpoint"),
		Bucket:          u.Host,
		Prefix:          strings.Trim(u.Path, "/"),
		Region:          q.Get("region"),
		CredentialsFile: opts.CredentialsFile,
		Profile:         q.Get("profile"),
	}
	if f := q.Get("credentials"); f != "" {
		cfg.CredentialsFile = f
	}
	if v := q.Get("insecure"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%w %q: insecure=%q is not true or false", ErrBadURL, u.Redacted(), v)
		}
		cfg.Insecure = b
	}
	if v := q.Get("retries"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, fmt.Errorf("%w %q: retries=%q is not a number from 1 to 100", ErrBadURL, u.Redacted(), v)
		}
		cfg.Retries = n
	}
	return NewS3Store(cfg)
}

// NewS3Store returns a store on cfg's bucket. It sends no request: a wrong
// endpoint or credentials show on first use, with an error that names them.
func NewS3Store(cfg S3Config) (*S3Store, error) {
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("%w: s3 store needs ?endpoint=HOST:PORT (for AWS: s3.amazonaws.com)", ErrBadURL)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: s3 store needs a bucket: s3://BUCKET/PREFIX?endpoint=%s", ErrBadURL, cfg.Endpoint)
	}
	if err := s3utils.CheckValidBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("%w: bucket %q: %v", ErrBadURL, cfg.Bucket, err)
	}
	if cfg.Prefix != "" {
		if err := CheckKey(cfg.Prefix); err != nil {
			return nil, fmt.Errorf("%w: prefix: %v", ErrBadURL, err)
		}
		cfg.Prefix += "/"
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	// The S3 client reads the file itself, later: a FIFO there would hang
	// the first request.
	if cfg.CredentialsFile != "" {
		if err := userpath.CheckFile(cfg.CredentialsFile); err != nil {
			return nil, fmt.Errorf("%w: credentials file: %v", ErrBadURL, err)
		}
	}
	transport, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return idleConn{c}, nil
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds: credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile},
		}),
		Secure:     !cfg.Insecure,
		Region:     cfg.Region,
		Transport:  transport,
		MaxRetries: cfg.Retries,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", ErrBadURL, cfg.Endpoint, err)
	}
	return &S3Store{client: client, endpoint: cfg.Endpoint, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

func (s *S3Store) String() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.client.EndpointURL().String()
}

// Open implements Store.
func (s *S3Store) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if off > 0 || n >= 0 {
		end := int64(-1)
		if n >= 0 {
			if n == 0 {
				return io.NopCloser(strings.NewReader("")), nil
			}
			end = off + n - 1
		}
		if err := setRange(&opts, off, end); err != nil {
			return nil, err
		}
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err == nil {
		_, err = obj.Stat() // sends the request, so a missing key fails here
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		return nil, s.fail("get", key, err)
	}
	return s3Body{obj, s, key}, nil
}

// s3Body is an object being read. Its errors name the endpoint like those
// of requests, and a body cut short is ErrUnreachable: io.EOF is only ever
// the object's end.
type s3Body struct {
	*minio.Object
	s   *S3Store
	key string
}

func (b s3Body) Read(p []byte) (int, error) {
	n, err := b.Object.Read(p)
	if err != nil && err != io.EOF {
		err = b.s.fail("read", b.key, err)
	}
	return n, err
}

// idleTimeout is how long a connection may go without a byte moving, be
// it waiting for a response, in the middle of a body, or idle in the pool:
// a stalled server or network fails a request in seconds, as
// ErrUnreachable, and the caller retries, instead of hanging until the
// kernel gives up.
const idleTimeout = 15 * time.Second

// idleConn pushes its deadline back by idleTimeout whenever it reads or
// writes, so a long transfer that keeps moving is never cut.
type idleConn struct{ net.Conn }

func (c idleConn) Read(p []byte) (int, error) {
	c.SetDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Read(p)
}

func (c idleConn) Write(p []byte) (int, error) {
	c.SetDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Write(p)
}

func setRange(opts *minio.GetObjectOptions, off, end int64) error {
	if end < 0 {
		return opts.SetRange(off, 0)
	}
	return opts.SetRange(off, end)
}

// Put implements Store. S3 makes an object visible only once complete.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create implements Store with a conditional PUT (If-None-Match: *).
func (s *S3Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *S3Store) put(ctx context.Context, key string, r io.Reader, size int64, create bool) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: size <= 64<<20}
	if create {
		opts.SetMatchETagExcept("*")
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, r, size, opts)
	if create && minio.ToErrorResponse(err).Code == minio.PreconditionFailed {
		return fmt.Errorf("create %s in bucket %q at %s: %w", key, s.bucket, s.endpoint, ErrExists)
	}
	return s.fail("put", key, err)
}

// Stat implements Store.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := CheckKey(key); err != nil {
		return ObjectInfo{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.fail("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Touch implements Store by copying the object onto itself, which S3
// allows when the metadata is replaced; the bytes never leave the server.
func (s *S3Store) Touch(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	_, err := s.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: s.bucket, Object: s.prefix + key, ReplaceMetadata: true,
			UserMetadata: map[string]string{"Touched": time.Now().UTC().Format(time.RFC3339)}},
		minio.CopySrcOptions{Bucket: s.bucket, Object: s.prefix + key})
	return s.fail("touch", key, err)
}

// Delete implements Store.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	return s.fail("delete", key, s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}))
}

// List implements Store.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine when fn returns early
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return s.fail("list", prefix, oi.Err)
		}
		if err := fn(ObjectInfo{Key: strings.TrimPrefix(oi.Key, s.prefix), Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// fail turns a minio-go error into one of the package's errors, naming the
// endpoint and bucket so a person knows where to look.
func (s *S3Store) fail(op, key string, err error) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("%s %s in bucket %q at %s", op, key, s.bucket, s.endpoint)
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case minio.NoSuchKey:
		return fmt.Errorf("%s: %w", where, ErrNotFound)
	case minio.NoSuchBucket:
		return fmt.Errorf("%s: %w: create bucket %q first", where, ErrNoBucket, s.bucket)
	case minio.InvalidAccessKeyID, "SignatureDoesNotMatch", minio.AccessDenied, "InvalidToken", "ExpiredToken":
		return fmt.Errorf("%s: %w (%s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the credentials file", where, ErrAccessDenied, resp.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, err)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || (errors.As(err, &netErr) && netErr.Timeout()) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) { // the connection closed early
		return fmt.Errorf("%s: %w: %v", where, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
