package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/enroll"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// access is what a method needs of its caller.
type access struct {
	// role is the least role of the caller's token.
	role imagefarmv1.Role
	// nodeCert: no token; the handler binds the call to the node whose
	// certificate the peer presented (checkNodePeer).
	nodeCert bool
	// bootToken: no token; the handler redeems the request's one-time
	// boot token (Enroll).
	bootToken bool
	// device: a device credential from Enroll, not a token; the handler
	// gets the device it names (callDevice).
	device bool
	// public: nothing; anyone who reaches the listener (health probes).
	public bool
}

var (
	viewer   = access{role: imagefarmv1.Role_ROLE_VIEWER}
	operator = access{role: imagefarmv1.Role_ROLE_OPERATOR}
	admin    = access{role: imagefarmv1.Role_ROLE_ADMIN}
)

// policy is what every method of the controller's services needs. A method
// missing from it is refused to everyone (and fails TestPolicyCoversEveryMethod).
var policy = map[string]access{
	imagefarmv1.ImageFarmService_GetJob_FullMethodName:     viewer,
	imagefarmv1.ImageFarmService_ListJobs_FullMethodName:   viewer,
	imagefarmv1.ImageFarmService_WatchJob_FullMethodName:   viewer,
	imagefarmv1.ImageFarmService_ListNodes_FullMethodName:  viewer,
	imagefarmv1.ImageFarmService_ListDrives_FullMethodName: viewer,
	imagefarmv1.ImageFarmService_ListImages_FullMethodName: viewer,
	imagefarmv1.ImageFarmService_GetImage_FullMethodName:   viewer,
	imagefarmv1.ImageFarmService_ListAudit_FullMethodName:  viewer,

	imagefarmv1.ImageFarmService_SubmitJob_FullMethodName:     operator,
	imagefarmv1.ImageFarmService_SubmitCapture_FullMethodName: operator,
	imagefarmv1.ImageFarmService_CancelJob_FullMethodName:     operator,

	imagefarmv1.ImageFarmService_CreateImageVersion_FullMethodName: admin,
	imagefarmv1.ImageFarmService_SetImageChannel_FullMethodName:    admin,
	imagefarmv1.ImageFarmService_RemoveImageRef_FullMethodName:     admin,
	imagefarmv1.ImageFarmService_SignImage_FullMethodName:          admin,
	imagefarmv1.ImageFarmService_CreateToken_FullMethodName:        admin,
	imagefarmv1.ImageFarmService_ListTokens_FullMethodName:         admin,
	imagefarmv1.ImageFarmService_RevokeToken_FullMethodName:        admin,

	imagefarmv1.ImagerService_Connect_FullMethodName: {nodeCert: true},

	imagefarmv1.ImageFarmService_ListDevices_FullMethodName: viewer,
	imagefarmv1.ImageFarmService_GetDevice_FullMethodName:   viewer,
	imagefarmv1.DeviceService_PlanBoot_FullMethodName:       operator, // the boot service's token
	imagefarmv1.DeviceService_Enroll_FullMethodName:         {bootToken: true},
	imagefarmv1.DeviceService_Report_FullMethodName:         {device: true},
	imagefarmv1.DeviceService_ReadObject_FullMethodName:     {device: true},
	imagefarmv1.DeviceService_StatObject_FullMethodName:     {device: true},
	imagefarmv1.DeviceService_ListObjects_FullMethodName:    {device: true},
	imagefarmv1.DeviceService_Capture_FullMethodName:        {device: true},

	imagefarmv1.ImageFarmService_SubmitReset_FullMethodName:       operator,
	imagefarmv1.ImageFarmService_ListResetPolicies_FullMethodName: viewer,
	imagefarmv1.ImageFarmService_SetResetPolicy_FullMethodName:    admin,
	imagefarmv1.ImageFarmService_SetDeviceFacts_FullMethodName:    admin,
	imagefarmv1.DeviceService_CheckResetTrigger_FullMethodName:    {device: true}, // and the token typed at the console
	imagefarmv1.DeviceService_PutResetState_FullMethodName:        {device: true},
	imagefarmv1.DeviceService_GetResetState_FullMethodName:        {device: true},

	imagefarmv1.ImageFarmService_ListModels_FullMethodName:     viewer,
	imagefarmv1.ImageFarmService_GetModel_FullMethodName:       viewer,
	imagefarmv1.ImageFarmService_ListRollouts_FullMethodName:   viewer,
	imagefarmv1.ImageFarmService_AddModel_FullMethodName:       admin,
	imagefarmv1.ImageFarmService_UpdateModel_FullMethodName:    admin,
	imagefarmv1.ImageFarmService_StartRollout_FullMethodName:   operator,
	imagefarmv1.ImageFarmService_ApproveRollout_FullMethodName: operator,
	imagefarmv1.ImageFarmService_PauseRollout_FullMethodName:   operator,
	imagefarmv1.ImageFarmService_ResumeRollout_FullMethodName:  operator,
	imagefarmv1.ImageFarmService_AbortRollout_FullMethodName:   operator,

	healthpb.Health_Check_FullMethodName:                                   {public: true}, // load balancers and probes have no token
	healthpb.Health_List_FullMethodName:                                    {public: true},
	healthpb.Health_Watch_FullMethodName:                                   {public: true},
	reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName:      viewer,
	reflectionpbalpha.ServerReflection_ServerReflectionInfo_FullMethodName: viewer,
}

// errNoToken is a call to the client API without a known token.
// Unauthenticated.
var errNoToken = errors.New("controller: no valid token")

// tokenKey is the context key of the token a call was authorized with.
type tokenKey struct{}

// callToken is the token a call was authorized with, if any.
func callToken(ctx context.Context) (*imagefarmv1.Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(*imagefarmv1.Token)
	return t, ok
}

// authorizer checks each call against policy with the client API's tokens.
type authorizer struct {
	tokens *tokens.Store
	creds  *enroll.Credentials // device credentials (authorizeDevice)
}

// authorizeUnary and authorizeStream refuse a call unless the policy of its
// method allows its caller, and give the handler the caller's token
// (callToken). They run after authUnary and authStream.
func (az authorizer) authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := az.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (az authorizer) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := az.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

func (az authorizer) authorize(ctx context.Context, method string) (context.Context, error) {
	need, ok := policy[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s has no access policy: nobody may call it", method)
	}
	switch {
	case need.nodeCert || need.bootToken || need.public:
		return ctx, nil
	case need.device:
		return az.authorizeDevice(ctx)
	}
	tok, err := az.callerToken(ctx)
	if err != nil {
		return nil, err
	}
	if tok.GetRole() < need.role {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs the %s role; token %q is a%s %s",
			method[strings.LastIndex(method, "/")+1:], roleName(need.role), tok.GetName(), article(tok.GetRole()), roleName(tok.GetRole()))
	}
	return context.WithValue(ctx, tokenKey{}, tok), nil
}

// callerToken is the stored token whose secret the call carries.
func (az authorizer) callerToken(ctx context.Context) (*imagefarmv1.Token, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return nil, fmt.Errorf("no token: pass --token or set IMAGEFARM_TOKEN: %w", errNoToken)
	}
	secret, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || len(vals) > 1 {
		return nil, fmt.Errorf(`authorization: want one "Bearer TOKEN": %w`, errNoToken)
	}
	tok, err := az.tokens.Lookup(ctx, secret)
	if errors.Is(err, tokens.ErrUnknown) {
		return nil, fmt.Errorf("unknown or revoked token: ask an admin for one (imagefarm token create): %w", errNoToken)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errTokensUnavailable)
	}
	return tok, nil
}

// errTokensUnavailable: the token bucket could not be read. Unavailable.
var errTokensUnavailable = errors.New("controller: tokens unavailable")

// roleName is "viewer" for ROLE_VIEWER.
func roleName(r imagefarmv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func article(r imagefarmv1.Role) string {
	if r == imagefarmv1.Role_ROLE_ADMIN || r == imagefarmv1.Role_ROLE_OPERATOR {
		return "n"
	}
	return ""
}
