package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/pki"
)

// Errors of who a peer is; toStatus maps them, with pki.ErrUntrusted.
var (
	// errNoCertificate: an imager stream without a client certificate.
	// Unauthenticated.
	errNoCertificate = errors.New("controller: no client certificate")
	// errWrongPeer: a certificate that does not name who the call is for:
	// not a node's, or another node's. PermissionDenied.
	errWrongPeer = errors.New("controller: certificate of another peer")
)

// insecureWarning is logged at every start of a controller without TLS.
const insecureWarning = "INSECURE: no TLS: anyone on the network can submit jobs that wipe drives, read the farm, and report as any imager node"

// peerKey is the context key of the verified identity of a call's peer.
type peerKey struct{}

// authUnary and authStream verify the client certificate a peer presented,
// if any, against the farm CA, refusing the call when it is not trusted,
// and give the handler the identity it binds (peerIdentity). A call without
// a certificate goes on without an identity: the handlers that need one
// (Connect) refuse it. Without TLS nobody has an identity.
func (c *Controller) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := c.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *Controller) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := c.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

// authedStream is a server stream whose context carries its peer's identity.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

func (c *Controller) authenticate(ctx context.Context) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || c.cfg.TLS == nil {
		return ctx, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ctx, nil
	}
	id, err := pki.VerifyClient(c.cfg.ClientCAs, info.State.PeerCertificates, time.Now())
	if err != nil {
		c.log.Warn("client certificate refused", "peer", peerAddr(ctx), "error", err)
		return nil, fmt.Errorf("the controller refuses this client certificate (issue a new one with imagefarm ca issue): %w", err)
	}
	return context.WithValue(ctx, peerKey{}, id), nil
}

// peerIdentity is the verified identity of a call's peer: the node or the
// client its certificate names. ok is false for a peer without a
// certificate, and for every peer of a controller without TLS. It is the
// one place a handler learns who is calling.
func peerIdentity(ctx context.Context) (id pki.Identity, ok bool) {
	id, ok = ctx.Value(peerKey{}).(pki.Identity)
	return id, ok
}

// checkNodePeer refuses an imager stream for node unless its peer's
// certificate is that node's: a node cannot report for another. Without
// TLS (--insecure) every node is taken at its word.
func (im *imagerServer) checkNodePeer(ctx context.Context, node string) error {
	if im.insecure {
		return nil
	}
	err := nodePeerErr(ctx, node)
	if err != nil {
		im.log.Warn("imager refused", "node_id", node, "peer", peerAddr(ctx), "error", err)
	}
	return err
}

// peerAddr is the network address of a call's peer, for logs.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func nodePeerErr(ctx context.Context, node string) error {
	id, ok := peerIdentity(ctx)
	switch {
	case !ok:
		return fmt.Errorf("an imager must present its node certificate (imagefarm ca issue --node %s): %w", ident.Quote(node), errNoCertificate)
	case id.Kind != pki.KindNode:
		return fmt.Errorf("hello for node %s with the certificate of %s, not of a node: %w", ident.Quote(node), id, errWrongPeer)
	case id.Name != node:
		return fmt.Errorf("hello for node %s with the certificate of node %s: a node reports only for itself: %w",
			ident.Quote(node), ident.Quote(id.Name), errWrongPeer)
	}
	return nil
}
