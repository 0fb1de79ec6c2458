package controller

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPanicInAHandlerFailsOnlyThatCall(t *testing.T) {
	var logged strings.Builder
	c := &Controller{log: slog.New(slog.NewTextHandler(&logged, nil))}
	_, err := c.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Unary"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "boom") {
		t.Errorf("unary panic = %v, want Internal naming it", err)
	}
	err = c.recoverStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x/Stream"},
		func(any, grpc.ServerStream) error { var m map[string]int; m["x"] = 1; return nil })
	if status.Code(err) != codes.Internal {
		t.Errorf("stream panic = %v, want Internal", err)
	}
	if !strings.Contains(logged.String(), "/x/Unary") || !strings.Contains(logged.String(), "/x/Stream") {
		t.Errorf("panics not logged with their method:\n%s", logged.String())
	}
	if _, err := c.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) { return 1, nil }); err != nil {
		t.Errorf("a handler that does not panic got %v", err)
	}
}
