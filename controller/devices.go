package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"

	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/enroll"
	"github.com/imagefarm/imagefarm/controller/fleet"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// DevicesConfig tunes network boot: how long the secrets of enrollment
// live.
type DevicesConfig struct {
	// BootTokenTTL is how long a boot token is accepted after PlanBoot
	// issued it; enroll.DefaultTokenTTL when 0.
	BootTokenTTL time.Duration
	// CredentialTTL is how long a device credential is accepted after
	// Enroll issued it; enroll.DefaultCredentialTTL when 0.
	CredentialTTL time.Duration
}

// deviceServer is the netbooted devices' API, DeviceService (with the
// client API's ListDevices and GetDevice, and the device jobs' submit
// checks): an adapter over the core, which makes every task and device
// state change; a device's reports go through the imagers' own handling.
// Run ends the task of a device gone silent.
type deviceServer struct {
	imagefarmv1.UnimplementedDeviceServiceServer
	st      *state.Store
	core    *core.Core
	cat     *catalog.Catalog
	imagers *imagerServer
	audit   auditor
	dev     *deviceFarm
	tokens  *tokens.Store // what a console's local trigger checks typed tokens against
	// submitReset is the API's SubmitReset, which a console's local
	// trigger calls in the name of the token typed.
	submitReset func(context.Context, *imagefarmv1.SubmitResetRequest) (*imagefarmv1.SubmitResetResponse, error)
	fleet       *fleet.Store
	refs        *catalogrefs.Store  // what the catalog watcher knows of the refs the controller changed
	signKey     *catalog.SigningKey // signs captures; nil stores them unsigned
	ttl         time.Duration       // a device silent for longer has its task lost
	log         *slog.Logger
	wake        func() // asks the placer to run soon
	// kickRollouts asks the rollout loop to run soon: a device's task
	// ended, or it booted.
	kickRollouts func()
}

// deviceFarm is what the controller keeps of netbooted devices: their
// records, the boot tokens and device credentials, and when each device
// was last heard (in memory, like imagers': a restart gives each a TTL).
type deviceFarm struct {
	records  *devices.Store
	policies *devices.Policies // reset policy records
	// resetState keeps what a device's reset must not lose to a power
	// cut, by device (PutResetState).
	resetState jetstream.ObjectStore
	tokens     *enroll.Tokens
	creds      *enroll.Credentials
	mu         sync.Mutex
	seen       map[string]time.Time // device id -> last heard
	readSets   sync.Map             // manifest digest -> *catalog.ReadSet
	// placing makes enrollments place one at a time, so that two devices
	// enrolling at once cannot both take an order's last place.
	placing sync.Mutex
}

// openDevices opens the device buckets, kept by replicas servers.
func openDevices(ctx context.Context, js jetstream.JetStream, replicas int, cfg DevicesConfig) (*deviceFarm, error) {
	d := &deviceFarm{seen: map[string]time.Time{}}
	var err error
	if d.records, err = devices.Open(ctx, js, replicas); err != nil {
		return nil, err
	}
	if d.policies, err = devices.OpenPolicies(ctx, js, replicas); err != nil {
		return nil, err
	}
	if d.resetState, err = openResetState(ctx, js, replicas); err != nil {
		return nil, err
	}
	if d.tokens, err = enroll.OpenTokens(ctx, js, replicas, cfg.BootTokenTTL); err != nil {
		return nil, err
	}
	if d.creds, err = enroll.OpenCredentials(ctx, js, replicas, cfg.CredentialTTL); err != nil {
		return nil, err
	}
	return d, nil
}

// heard records that a device was heard now.
func (c *deviceServer) heard(deviceID string) {
	c.dev.mu.Lock()
	c.dev.seen[deviceID] = time.Now()
	c.dev.mu.Unlock()
}

// updateDevice changes a known device's record through the core's device
// table (core.ApplyDevice); a device the farm does not know is
// devices.ErrNotFound.
func (c *deviceServer) updateDevice(ctx context.Context, id string, change func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
	return core.ApplyDevice(id, func(fn func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
		return c.dev.records.UpdateIfKnown(ctx, id, fn)
	}, change)
}

// deviceNodePrefix starts the node id of a netbooted device's tasks:
// "device-" and the device id. No imager may take such a node id
// (checkHello), so an imager can never report on a device's task.
const deviceNodePrefix = "device-"

// deviceNode is the node id a device's tasks carry.
func deviceNode(deviceID string) string { return deviceNodePrefix + deviceID }

// deviceKey is the context key of the device a call's credential names.
type deviceKey struct{}

// callDevice is who the device credential of a call authorizes.
func callDevice(ctx context.Context) enroll.Caller {
	who, _ := ctx.Value(deviceKey{}).(enroll.Caller)
	return who
}

// errNoDeviceCredential: a device call without a valid credential.
// Unauthenticated.
var errNoDeviceCredential = errors.New("controller: no valid device credential")

// authorizeDevice checks a device call's credential and gives the handler
// its device (callDevice).
func (az authorizer) authorizeDevice(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	secret, ok := "", len(vals) == 1
	if ok {
		secret, ok = strings.CutPrefix(vals[0], "Bearer ")
	}
	if !ok {
		return nil, toStatus(fmt.Errorf(`authorization: want one "Bearer ifd_..." device credential from Enroll: %w`, errNoDeviceCredential))
	}
	who, err := az.creds.Device(ctx, secret)
	if errors.Is(err, enroll.ErrNoCredential) {
		return nil, toStatus(fmt.Errorf("unknown or expired device credential: reboot the device to enroll again: %w", errNoDeviceCredential))
	}
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: %w", err, errTokensUnavailable))
	}
	return context.WithValue(ctx, deviceKey{}, who), nil
}

// ListDevices implements ImageFarmService.ListDevices.
func (c *deviceServer) ListDevices(ctx context.Context, req *imagefarmv1.ListDevicesRequest) (*imagefarmv1.ListDevicesResponse, error) {
	if err := checkEnums("states", req.GetStates()...); err != nil {
		return nil, toStatus(err)
	}
	all, err := c.dev.records.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetUnknownModel() {
		models, err := c.fleet.Models(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		all = unknownModel(all, models)
	}
	var out []*imagefarmv1.Device
	for _, d := range all {
		if (req.GetModel() == "" || d.GetModel() == req.GetModel()) && stateIn(d.GetState(), req.GetStates()) {
			out = append(out, d)
		}
	}
	return &imagefarmv1.ListDevicesResponse{Devices: out}, nil
}

func stateIn(s imagefarmv1.DeviceState, states []imagefarmv1.DeviceState) bool {
	for _, w := range states {
		if s == w {
			return true
		}
	}
	return len(states) == 0
}

// GetDevice implements ImageFarmService.GetDevice.
func (c *deviceServer) GetDevice(ctx context.Context, req *imagefarmv1.GetDeviceRequest) (*imagefarmv1.GetDeviceResponse, error) {
	d, err := c.oneDevice(ctx, req.GetDevice())
	if err != nil {
		return nil, toStatus(err)
	}
	pol, err := c.dev.policies.Effective(ctx, d)
	if err != nil {
		return nil, toStatus(err)
	}
	return &imagefarmv1.GetDeviceResponse{Device: d, ResetPolicy: pol}, nil
}

// oneDevice is the one device that what (an id, a serial or a MAC) names.
func (c *deviceServer) oneDevice(ctx context.Context, what string) (*imagefarmv1.Device, error) {
	if err := devices.CheckText("device", what); err != nil || what == "" {
		return nil, fmt.Errorf("device %q: give a device id, serial or MAC as `imagefarm devices ls` lists them: %w", what, errBadRequest)
	}
	found, err := c.dev.records.Find(ctx, what)
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no device has the id, serial or MAC %q: a device is known once it has netbooted into the farm (imagefarm devices ls): %w",
			what, devices.ErrNotFound)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, d := range found {
		ids = append(ids, d.GetId())
	}
	return nil, fmt.Errorf("%q names %d devices (%s): give one by its id: %w", what, len(found), strings.Join(ids, ", "), errBadRequest)
}

// ListDevices implements ImageFarmService.ListDevices.
func (a *apiServer) ListDevices(ctx context.Context, req *imagefarmv1.ListDevicesRequest) (*imagefarmv1.ListDevicesResponse, error) {
	return a.dev.ListDevices(ctx, req)
}

// GetDevice implements ImageFarmService.GetDevice.
func (a *apiServer) GetDevice(ctx context.Context, req *imagefarmv1.GetDeviceRequest) (*imagefarmv1.GetDeviceResponse, error) {
	return a.dev.GetDevice(ctx, req)
}
