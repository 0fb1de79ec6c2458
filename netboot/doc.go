// Package netboot owns the boot service: what a laptop on the depot LAN
// talks to from power-on until its deploy environment runs. It answers
// PXE clients over DHCP (proxyDHCP beside the site's DHCP server by
// default, a full DHCP server for an isolated bench as an option), serves
// the boot binaries over TFTP and nothing else, and serves each machine's
// iPXE script, the kernel and the initramfs over HTTP.
//
// A client's way in depends on its firmware (DHCP option 93) and on the
// chain configured for it:
//
//	BIOS                  TFTP undionly.kpxe → iPXE → HTTP script
//	UEFI, iPXE chain      TFTP ipxe.efi (or snponly.efi) → iPXE → HTTP script
//	UEFI, signed chain    TFTP shimx64.efi → grubx64.efi → grub/grub.cfg →
//	                      the machine's generated GRUB config → kernel and
//	                      initramfs over TFTP (Secure Boot on, no key of ours)
//	UEFI HTTP boot        HTTP ipxe.efi → iPXE → HTTP script
//	iPXE (any)            the script URL, never iPXE again (no boot loop)
//
// What a machine boots is not decided here: the Planner the service is
// configured with decides it per boot (ControllerPlanner: the farm's
// controller). The default planner boots every
// machine from its local disk, so PXE can stay first in a laptop's boot
// order and a machine nobody planned for is never touched.
//
// The deploy environment is served by version (DeployEnv, by id in every
// URL); SetEnv gives the next boots a new one while the boots that
// started with an older one still load its files.
package netboot
