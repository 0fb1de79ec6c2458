package redact_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/imagefarm/imagefarm/internal/redact"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://user:pw@host:4222", "nats://xxxxx@host:4222"},
		{"nats://s3cr3t-token@host:4222", "nats://xxxxx@host:4222"},
		{"nats://a:b@h1:4222,nats://c:d@h2:4222", "nats://xxxxx@h1:4222,nats://xxxxx@h2:4222"},
		{"tls://u:p@w@host", "tls://xxxxx@host"},
		{"user:pw@host:4222", "xxxxx@host:4222"},
		{"s3://AKIA:SECRET@bucket/prefix?endpoint=minio:9000", "s3://xxxxx@bucket/prefix?endpoint=minio:9000"},
		{"s3://%zz:SECRET@bucket", "s3://xxxxx@bucket"}, // does not parse as a URL
		{"s3://bucket/p?endpoint=h:9000&x=a@b", "s3://bucket/p?endpoint=h:9000&x=a@b"},
		{"file:///srv/images", "file:///srv/images"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"", ""},
	} {
		if got := redact.URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	inner := errors.New(`parse "nats://v:x@%zz": invalid URL escape "%zz"`)
	err := redact.Error(fmt.Errorf("connect: %w", inner), "nats://u:p@h:4222,nats://v:x@%zz")
	if want := `connect: parse "nats://xxxxx@%zz": invalid URL escape "%zz"`; err.Error() != want || !errors.Is(err, inner) {
		t.Errorf("Error() = %q (wraps the error: %v), want %q", err, errors.Is(err, inner), want)
	}
	if redact.Error(nil, "nats://u:p@h") != nil || redact.Error(inner, "nats://h:4222") != inner {
		t.Error("Error changed an error with nothing to redact")
	}
}
