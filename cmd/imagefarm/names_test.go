package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/pki"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
	"github.com/imagefarm/imagefarm/tests/testenv/simimager"
)

// The tests of this file feed the same names (at the limit, one past it,
// each forbidden character, Unicode, empty) to every component that takes
// that kind of name: the catalog, the controller's API and store, the
// scheduler, the NATS wire, the farm CA, the node config and the CLI. Each
// must accept exactly the names the others accept: a name pushed to the
// catalog that the controller then refuses, or a node id the CA certifies
// that NATS cannot route, is the defect they catch.

// startNameFarm starts a real controller in plaintext on loopback, whose
// nodes stay online for an hour without a heartbeat, with img:1 in its
// catalog and an online node "bench-node" in pool "bench" with no drives,
// so that a standing order for pool bench is accepted.
func startNameFarm(t *testing.T) *farm.Farm {
	t.Helper()
	f := farm.Start(t, farm.Options{Plaintext: true, HeartbeatTTL: time.Hour, PushImage: true})
	if err := hello(t, f, &imagefarmv1.Hello{NodeId: "bench-node", Pool: "bench"}); err != nil {
		t.Fatalf("hello of bench-node: %v", err)
	}
	return f
}

// cli runs imagefarm as f's admin against its controller and store.
func cli(t *testing.T, f *farm.Farm, args ...string) error {
	t.Helper()
	out, errOut, err := as(t, f, f.AdminToken, args...)
	if err != nil {
		t.Logf("imagefarm %q: %v\n%s%s", args, err, out, errOut)
	}
	return err
}

// hello connects a simulated imager that says h and returns the error its
// Hello got, or nil for a HelloAck; an accepted node stays online until
// the test ends.
func hello(t *testing.T, f *farm.Farm, h *imagefarmv1.Hello) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.InstanceId = "i-" + h.GetNodeId()
	if _, err := simimager.New(simimager.Config{Hello: h, Conn: f.Dial(t, f.ClientCreds(t, ""))}).Connect(ctx); err != nil {
		cancel()
		return err
	}
	t.Cleanup(cancel)
	return nil
}

// usbDriveNamed is an available 64 MiB USB drive.
func usbDriveNamed(id string) *imagefarmv1.Drive {
	return &imagefarmv1.Drive{Id: id, Serial: "SN-1", SizeBytes: 64 << 20, Removable: true,
		Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE}
}

// apiAccepts reports whether the controller took a name: any answer but
// InvalidArgument (a NotFound for a name that is valid but unknown is an
// acceptance of the name).
func apiAccepts(err error) bool { return status.Code(err) != codes.InvalidArgument }

func orderTargets(sel *imagefarmv1.Selector) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Count: 1, Selector: sel}}}
}

func driveTargets(ids ...string) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: ids}}}
}

// verdicts collects what each component said of one name.
type verdicts struct {
	t    *testing.T
	name string
	want bool
}

func (v verdicts) check(component string, accepted bool, err error) {
	v.t.Helper()
	if accepted != v.want {
		v.t.Errorf("%s accepted %q = %v, want %v (err: %v)", component, cut(v.name), accepted, v.want, err)
	}
}

func cut(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s…(%d bytes)", s[:40], len(s))
	}
	return s
}

var (
	n128  = strings.Repeat("n", 128)
	hex64 = strings.Repeat("0123456789abcdef", 4)
)

// TestImageRefRulesAgree: a ref the catalog and the CLI push is one the
// controller takes, and one they refuse it refuses; a 128:128 ref is
// pushed, then used in a job.
func TestImageRefRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	img := writeDiskImage(t, 1<<20, 1)
	other, _ := storage.NewFileStore(t.TempDir())
	cat, _ := catalog.New(other, catalog.Options{})
	data := bytes.Repeat([]byte{1}, 4096)
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"demo-disk:1", true},
		{"A.b_c+d-e:1.0_rc+2", true},
		{n128 + ":" + strings.Repeat("v", 128), true},
		{strings.Repeat("n", 129) + ":1", false},
		{"a:" + strings.Repeat("v", 129), false},
		{n128 + "@sha256:" + hex64, true},
		{"a@sha256:" + strings.ToUpper(hex64), false},
		{"a@sha256:" + hex64[1:], false},
		{"a", false}, {":1", false}, {"a:", false}, {"", false},
		{"a/b:1", false}, {"a:b/c", false}, {"a b:1", false}, {"a:b c", false}, {"a*:1", false}, {"a:b>", false},
		{"a\x00:1", false}, {"a:1\n", false}, {"é:1", false}, {"a:ü", false}, {"a:b:c", false},
		{".a:1", false}, {"-a:1", false}, {"a:.1", false}, {"a..b:1", false}, {"a:1..2", false},
	} {
		v := verdicts{t, tc.ref, tc.want}
		_, err := catalog.ParseRef(tc.ref)
		v.check("catalog.ParseRef", err == nil, err)
		if name, version, ok := strings.Cut(tc.ref, ":"); ok && !strings.Contains(tc.ref, "@") {
			_, err = cat.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: name, Version: version, Kind: catalog.KindDisk})
			v.check("catalog.Push", err == nil, err)
			err = cli(t, f, "image", "push", tc.ref, img)
			v.check("imagefarm image push", err == nil, err)
			err = cli(t, f, "job", "submit", tc.ref, "--count", "1", "--pool", "bench")
			v.check("imagefarm job submit", err == nil, err)
		}
		_, err = f.API.GetImage(t.Context(), &imagefarmv1.GetImageRequest{Ref: tc.ref})
		v.check("controller GetImage", apiAccepts(err), err)
		_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: tc.ref, Targets: driveTargets("nowhere/d1")})
		v.check("controller SubmitJob", apiAccepts(err), err)
	}
}

// TestNodeIDRulesAgree: a node id the farm CA certifies is one NATS can
// route to, the store can key, the scheduler can target and the CLI can
// write credentials for; and the other way round.
func TestNodeIDRulesAgree(t *testing.T) {
	clearTLSEnv(t)
	f := startNameFarm(t)
	caDir := t.TempDir()
	mustRun(t, "ca", "init", "--dir", caDir)
	ca := testenv.NewPKI(t)
	if _, err := wire.EnsureStream(t.Context(), f.JS, wire.Config{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"bench-3", true}, {"n_1", true}, {"-lead", true}, {strings.Repeat("n", 64), true},
		{strings.Repeat("n", 65), false}, {n128, false}, {"", false},
		{"a.b", false}, {"a:b", false}, {"a b", false}, {"a/b", false}, {"a*", false}, {"a>", false},
		{"a\x00", false}, {"bänk", false}, {"a=b", false},
	} {
		v := verdicts{t, tc.id, tc.want}
		_, _, err := ca.CA.IssueFiles(t.TempDir(), pki.Request{Kind: pki.KindNode, Name: tc.id})
		v.check("pki IssueFiles", err == nil, err)
		_, err = run(t, "ca", "issue", "--dir", caDir, "--node="+tc.id, "--out", t.TempDir())
		v.check("imagefarm ca issue --node", err == nil, err)
		_, err = run(t, "nats-config", "--dir", t.TempDir(), "--node="+tc.id)
		v.check("imagefarm nats-config --node", err == nil, err)
		_, err = wire.EnsureConsumer(t.Context(), f.JS, tc.id, wire.Config{})
		v.check("wire.EnsureConsumer", err == nil, err)
		_, err = scheduler.ParseDriveRef(tc.id + "/d1")
		v.check("scheduler.ParseDriveRef", err == nil, err)
		_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: driveTargets(tc.id + "/d1")})
		v.check("controller SubmitJob drive", apiAccepts(err), err)
		_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: orderTargets(&imagefarmv1.Selector{NodeIds: []string{tc.id}})})
		v.check("controller SubmitJob selector", apiAccepts(err), err)
		_, err = f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{NodeId: tc.id})
		if tc.id != "" { // "" is no filter
			v.check("controller ListJobs", apiAccepts(err), err)
		}
		err = hello(t, f, &imagefarmv1.Hello{NodeId: tc.id})
		v.check("controller Hello", err == nil, err)
	}
}

// TestDriveIDRulesAgree: a drive id the controller takes in a Hello is one
// its store keeps, the scheduler parses and the CLI can submit a job to.
func TestDriveIDRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	st, err := state.New(t.Context(), f.JS, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		id   string
		want bool
	}{
		{"usb-Kingston_DT_123", true}, {"virt-disk0.img", true}, {"wwn-0x5000:1", true}, {"-x", true},
		{strings.Repeat("d", 255), true}, {strings.Repeat("d", 256), false}, {"", false},
		{"a b", false}, {"a/b", false}, {"✓", false}, {"a\tb", false}, {"a=b", false}, {"a*", false}, {"a\xff", false},
	} {
		v := verdicts{t, tc.id, tc.want}
		node := fmt.Sprint("dn-", i)
		_, err := st.UpdateDrive(t.Context(), "store-node", tc.id, func(d *imagefarmv1.Drive) error { return nil })
		v.check("state UpdateDrive", err == nil, err)
		_, err = scheduler.ParseDriveRef(node + "/" + tc.id)
		v.check("scheduler.ParseDriveRef", err == nil, err)
		err = hello(t, f, &imagefarmv1.Hello{NodeId: node, Drives: []*imagefarmv1.Drive{usbDriveNamed(tc.id)}})
		v.check("controller Hello", err == nil, err)
		err = cli(t, f, "job", "submit", "img:1", "--drive", node+"/"+tc.id)
		v.check("imagefarm job submit --drive", err == nil, err)
	}
}

// TestLabelRulesAgree: a label a node, a job, a selector or an image may
// have is the same everywhere, from the CLI or the API.
func TestLabelRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	img := writeDiskImage(t, 1<<20, 1)
	other, _ := storage.NewFileStore(t.TempDir())
	cat, _ := catalog.New(other, catalog.Options{})
	data := bytes.Repeat([]byte{1}, 4096)
	for i, tc := range []struct {
		key, value string
		want       bool
		cli        bool // the CLI's KEY=VALUE,... syntax can say it
	}{
		{"site", "lab", true, true}, {"rack.3_x-y", "", true, true}, {strings.Repeat("k", 63), strings.Repeat("v", 255), true, true},
		{"site", "bench 3 é", true, true},
		{strings.Repeat("k", 64), "v", false, true}, {"k", strings.Repeat("v", 256), false, true},
		{"", "v", false, false}, {"a b", "v", false, true}, {"a=b", "v", false, false}, {"a,b", "v", false, false},
		{"é", "v", false, true}, {"k\x1b", "v", false, true},
		{"k", "\x1b[2J", false, true}, {"k", "a\u202eb", false, true}, {"k", "a\u00a0b", false, true},
	} {
		v := verdicts{t, tc.key + "=" + tc.value, tc.want}
		labels := map[string]string{tc.key: tc.value}
		_, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Labels: labels, Targets: driveTargets("nowhere/d1")})
		v.check("controller SubmitJob labels", apiAccepts(err), err)
		_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: orderTargets(&imagefarmv1.Selector{Labels: labels})})
		v.check("controller SubmitJob selector", apiAccepts(err), err)
		err = hello(t, f, &imagefarmv1.Hello{NodeId: fmt.Sprint("ln-", i), Labels: labels})
		v.check("controller Hello", err == nil, err)
		_, err = cat.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{
			Name: "l", Version: fmt.Sprint(i), Kind: catalog.KindDisk, Labels: labels})
		v.check("catalog.Push", err == nil, err)
		if tc.cli {
			err = cli(t, f, "job", "submit", "img:1", "--count", "1", "--pool", "bench", "--label-job", tc.key+"="+tc.value)
			v.check("imagefarm job submit --label-job", err == nil, err)
			err = cli(t, f, "image", "push", fmt.Sprint("l:", i), img, "--label", tc.key+"="+tc.value)
			v.check("imagefarm image push --label", err == nil, err)
		}
	}
}

// TestPoolRulesAgree: a pool a node may be in is one a job may select,
// from the CLI or the API.
func TestPoolRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	for i, tc := range []struct {
		pool string
		want bool
	}{
		{"usb-bench", true}, {"bench 3 é", true}, {strings.Repeat("p", 255), true},
		{strings.Repeat("p", 256), false}, {"\x1b[2J", false}, {"a\u202eb", false},
	} {
		v := verdicts{t, tc.pool, tc.want}
		err := hello(t, f, &imagefarmv1.Hello{NodeId: fmt.Sprint("pn-", i), Pool: tc.pool})
		v.check("controller Hello", err == nil, err)
		_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: orderTargets(&imagefarmv1.Selector{Pool: tc.pool})})
		v.check("controller SubmitJob selector", apiAccepts(err), err)
		err = cli(t, f, "job", "submit", "img:1", "--count", "1", "--pool", tc.pool)
		v.check("imagefarm job submit --pool", err == nil, err)
	}
}

// TestSlotLabelRulesAgree: a slot label a node config may give is one the
// controller takes in a Hello.
func TestSlotLabelRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	for i, tc := range []struct {
		label string
		want  bool
	}{
		{"bench 3, port 12", true}, {"", true}, {strings.Repeat("s", 255), true},
		{strings.Repeat("s", 256), false}, {"\x1b[2J", false}, {"a\u202eb", false},
	} {
		v := verdicts{t, tc.label, tc.want}
		d := usbDriveNamed("d1")
		d.SlotLabel = tc.label
		err := hello(t, f, &imagefarmv1.Hello{NodeId: fmt.Sprint("sn-", i), Drives: []*imagefarmv1.Drive{d}})
		v.check("controller Hello", err == nil, err)
		cfg, _ := json.Marshal(map[string]any{"slots": map[string]string{"usb-0:1": tc.label}})
		file := filepath.Join(t.TempDir(), "node.json")
		if err := os.WriteFile(file, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = drive.LoadConfig(file)
		v.check("drive.LoadConfig", err == nil, err)
	}
}

// TestTokenNameRulesAgree: the CLI, the API and the token store take the
// same token names.
func TestTokenNameRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	st, err := tokens.Open(t.Context(), f.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"alice", true}, {"ci@lab.example", true}, {strings.Repeat("t", 64), true},
		{strings.Repeat("t", 65), false}, {"", false}, {"a b", false}, {"a/b", false}, {"é", false}, {"a:b", false},
	} {
		v := verdicts{t, tc.name, tc.want}
		err := cli(t, f, "token", "create", "--name", tc.name, "--role", "viewer")
		v.check("imagefarm token create", err == nil, err)
		// The same name again is refused as taken, not as malformed.
		_, err = f.API.CreateToken(t.Context(), &imagefarmv1.CreateTokenRequest{Name: tc.name, Role: imagefarmv1.Role_ROLE_VIEWER})
		v.check("controller CreateToken", apiAccepts(err), err)
		_, _, err = st.Create(t.Context(), tc.name, imagefarmv1.Role_ROLE_VIEWER, "test")
		v.check("tokens.Store.Create", !errors.Is(err, tokens.ErrInvalid), err)
	}
}

// TestRequestIDRulesAgree: the CLI and the API take the same request ids.
func TestRequestIDRulesAgree(t *testing.T) {
	f := startNameFarm(t)
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"rq-1", true}, {"550e8400-e29b-41d4-a716-446655440000", true}, {strings.Repeat("r", 128), true},
		{strings.Repeat("r", 129), false}, {strings.Repeat("r", 256), false}, {"a b", false}, {"é", false}, {"a\x00", false},
	} {
		v := verdicts{t, tc.id, tc.want}
		_, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", RequestId: tc.id, Targets: driveTargets("nowhere/d1")})
		v.check("controller SubmitJob", apiAccepts(err), err)
		err = cli(t, f, "job", "submit", "img:1", "--count", "1", "--pool", "bench", "--request-id", tc.id)
		v.check("imagefarm job submit --request-id", err == nil, err)
	}
}
