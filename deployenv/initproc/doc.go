// Package initproc is what the imagefarm binary does when it runs as
// /init in the deploy environment (package deployenv builds it): it
// mounts the kernel's file systems, loads the kernel modules the
// environment holds, brings a NIC up with DHCP, and reads who the device
// is (SMBIOS vendor, model, serial and UUID, its MACs) and what disks it
// has (imager/drive's discovery, from sysfs: there is no udev here).
//
// When the command line names the plan's disk, it finds it with
// SelectDisk: by serial and size, never a guess, and only an internal
// disk (a removable or USB one is refused). It prints all that as one
// line of JSON on the console (Report). With a boot token and a controller
// it then joins the farm (package deployenv/device: enroll, write the disk
// the assignment names, report) and prints what came of it (Deploy), and
// reboots or powers off as the job says; without them it powers off,
// reboots or waits, as the command line says.
//
// The kernel command line carries what the boot service gave this boot:
//
//	imagefarm.controller=HOST:PORT   the controller to report to
//	imagefarm.token=TOKEN            a one-time boot token (never printed)
//	imagefarm.insecure=1             plaintext to the controller (a trusted lab), not TLS against FarmCA
//	imagefarm.then=poweroff|reboot   what to do once done; wait when absent
//	imagefarm.disk_serial=SERIAL     the disk the plan names, by serial
//	imagefarm.disk_size=BYTES        and size (both or neither)
//	BOOTIF=01-aa-bb-cc-dd-ee-ff      the NIC that netbooted (iPXE, pxelinux); all NICs when absent
package initproc
