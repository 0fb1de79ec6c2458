package controller

import (
	"context"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recoverUnary and recoverStream turn a panic in an RPC handler into an
// Internal error for that call, logged with its stack, so that one request
// that hits a bug cannot take down the controller and every imager stream
// on it.
func (c *Controller) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer c.recovered(info.FullMethod, &err)
	return handler(ctx, req)
}

func (c *Controller) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer c.recovered(info.FullMethod, &err)
	return handler(srv, ss)
}

func (c *Controller) recovered(method string, err *error) {
	if r := recover(); r != nil {
		c.log.Error("panic in RPC handler", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "the controller hit a bug on this request (%v); it is logged and the controller goes on: report it", r)
	}
}
