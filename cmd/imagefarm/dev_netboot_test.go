package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// inNetns runs fn on a thread inside the network namespace name: a socket
// fn makes stays in that namespace after the thread goes back to its own.
func inNetns(t *testing.T, name string, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", name))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return err // the thread stays locked, and ends with its goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialIn dials addr over TCP from inside the network namespace name.
func dialIn(t *testing.T, name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		err = inNetns(t, name, func() error {
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
			return err
		})
		return conn, err
	}
}

// TestDevNetbootServesTheLab: imagefarm dev --netboot br0, in a network
// namespace the test makes, starts the boot service beside the dev farm:
// it answers a PXE client's DHCP discover from another host of the lab
// with a proxyDHCP offer naming iPXE, and the script it serves a laptop
// that enrolled with the dev controller is the controller's plan for it
// (the deploy environment from the dev store, a boot token, the
// controller's address).
func TestDevNetbootServesTheLab(t *testing.T) {
	testenv.DebianKernel(t)
	ns := testenv.NewNetns(t, "198.18.7.1/24")
	peer := ns.Peer(t, "198.18.7.2/24")
	data := t.TempDir()
	signing := filepath.Join(data, "signing")
	mustRun(t, "key", "init", "--out", signing) // the dev farm's key, made before it starts, signs what it serves
	store := "--store=file://" + filepath.Join(data, "store")
	key := filepath.Join(signing, signKeyFile)
	mustRun(t, store, "netboot", "build-env", "--init", testenv.StaticProgram(t), "--push", "deploy:1", "--sign-key", key)
	mustRun(t, store, "image", "push", "disk:1", writeDiskImage(t, 1<<20, 7), "--sign-key", key)
	dev := testenv.Start(t, "imagefarm-dev", ns.Command(t, cliBinary.get(t), "dev", "--data", data, "--listen", "198.18.7.1:7443",
		"--drives", "1", "--drive-size", "16MiB", "--netboot", "br0", "--netboot-env", "deploy:1"))
	testenv.Eventually(t, 2*time.Minute, "the boot service ready", func() bool { return strings.Contains(dev.Output(t), "boot service ready") })

	// A PXE client's discover, broadcast on the lab's subnet from its other host.
	var conn *net.UDPConn
	if err := inNetns(t, peer.Name, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x07, 0, 0x01}
	discover, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteToUDP(discover.ToBytes(), &net.UDPAddr{IP: net.IPv4(198, 18, 7, 255), Port: 67}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 1500)
	var offer *dhcpv4.DHCPv4
	for offer == nil {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no proxyDHCP offer: %v\ndev said:\n%s", err, dev.Output(t))
		}
		if m, err := dhcpv4.FromBytes(buf[:n]); err == nil && m.TransactionID == discover.TransactionID && m.MessageType() == dhcpv4.MessageTypeOffer {
			offer = m
		}
	}
	if offer.BootFileName != "undionly.kpxe" || !offer.YourIPAddr.IsUnspecified() || !offer.ServerIPAddr.Equal(net.IPv4(198, 18, 7, 1)) {
		t.Errorf("offer: boot file %q, address %s, next server %s; want undionly.kpxe, no address, 198.18.7.1",
			offer.BootFileName, offer.YourIPAddr, offer.ServerIPAddr)
	}

	// A laptop enrolls with the dev controller, reached from the lab.
	ca, err := pki.LoadPool(filepath.Join(data, "pki", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(filepath.Join(data, "pki", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	gc, err := grpc.NewClient("198.18.7.1:7443", grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return dialIn(t, peer.Name)(ctx, "tcp", addr)
	}), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	bearer := grpc.PerRPCCredsCallOption{Creds: tokens.Bearer{Secret: strings.TrimSpace(string(admin))}}
	api, devices := imagefarmv1.NewImageFarmServiceClient(gc), imagefarmv1.NewDeviceServiceClient(gc)
	order := &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: "Lab 1", Count: 1}}}
	if _, err := api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "disk:1", Targets: order}, bearer); err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	plan, err := devices.PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac.String(), Arch: "bios"}, bearer)
	if err != nil || plan.GetBootToken() == "" {
		t.Fatalf("PlanBoot = %v, %v; want a boot token", plan, err)
	}
	enrolled, err := devices.Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: plan.GetBootToken(), BootMac: mac.String(), Arch: "bios",
		Identity: &imagefarmv1.DeviceIdentity{Serial: "SN-LAB-1", Vendor: "Lab", Model: "Lab 1"},
		Disks:    []*imagefarmv1.Drive{{Id: "virt-nvme0n1", Serial: "DISK-1", SizeBytes: 64 << 20, Transport: imagefarmv1.Transport_TRANSPORT_NVME}}})
	if err != nil || enrolled.GetAssignment() == nil {
		t.Fatalf("Enroll = %v, %v; want an assignment", enrolled, err)
	}

	// Its script from the boot service is the dev controller's plan.
	web := &http.Client{Transport: &http.Transport{DialContext: dialIn(t, peer.Name)}, Timeout: 30 * time.Second}
	resp, err := web.Get(fmt.Sprintf("http://198.18.7.1:8080/plan.ipxe?mac=%s&arch=bios", strings.ReplaceAll(mac.String(), ":", "-")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	script, _ := io.ReadAll(resp.Body)
	kernel := regexp.MustCompile(`(?m)^kernel http://198\.18\.7\.1:8080/files/[0-9a-f]+/vmlinuz initrd=initramfs BOOTIF=01-52-54-00-07-00-01 ` +
		`imagefarm\.token=ifb_\S+ imagefarm\.controller=198\.18\.7\.1:7443 \|\| goto local$`)
	if !kernel.Match(script) || !strings.Contains(string(script), "echo imagefarm: its task "+enrolled.GetAssignment().GetTaskId()) {
		t.Errorf("the enrolled laptop's script:\n%s\nwant the deploy environment with a boot token, planned for its task %s",
			script, enrolled.GetAssignment().GetTaskId())
	}
}
