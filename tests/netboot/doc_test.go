// Package netboot_test boots virtual machines through imagefarm's boot
// service into imagefarm's deploy environment, end to end, on a LAN the
// tests make in network namespaces and remove again: a bridge with no
// route out (198.18.0.0/24, the test range), the site's DHCP server
// (dnsmasq, on another namespace, knowing nothing of PXE), imagefarm
// netboot serve in proxyDHCP mode serving the environment that imagefarm
// netboot build-env pushed to a catalog, signed, and QEMU VMs on tap
// devices: SeaBIOS, OVMF, and OVMF with Microsoft's keys and Secure Boot
// on. A VM that boots the environment reports its identity and lease on
// its serial console and powers off; a VM with no work boots its local
// disk, whose MBR prints a marker of its own (a UEFI VM's: the
// BOOTX64.EFI of its EFI system partition, efiMarker). A BIOS VM whose
// PXE client is not iPXE (ipxe.lkrn with another user class: Debian has
// no other PXE ROM) gets undionly.kpxe over TFTP. A UEFI VM with no work
// shows OVMF going on down its boot order after iPXE's exit: its UEFI
// HTTP boot entry (vendor class HTTPClient, answered with ipxe.efi's
// URL: iPXE over HTTP, the same local-boot script), then its disk.
// TestNetbootDeploysADevice has a dev farm's controller on the bridge
// plan the boot instead, and the VM enrolls and images its disk.
// TestFigures is tests/bench/netboot.sh's, not CI's.
//
// The tests need root (network namespaces, taps) and Debian's
// qemu-system-x86, ovmf, ipxe, linux-image-amd64 and dnsmasq-base, and the
// signed boot chain (shim-signed, grub-efi-amd64-signed) unpacked into
// .cache/signed-boot: scripts/test.sh installs all of them.
package netboot_test
