// Package initproc is what the imagefarm binary does when it runs as
// /init in the deploy environment (package deployenv builds it): it
// mounts the kernel's file systems, loads the kernel modules the
// environment holds, brings a NIC up with DHCP, and reads who the device
// is (SMBIOS vendor, model, serial and UUID, its MACs) and what disks it
// has (imager/drive's discovery, from sysfs: there is no udev here).
//
// When the command line names the plan's disk, it finds it with
// SelectDisk: by serial and size, never a guess, and only an internal
// disk (a removable or USB one is refused). For now it prints all that as
// one line of JSON on the console (Report) and then powers off, reboots
// or waits, as the command line says. The step after it is to join the
// farm as a short-lived imager whose only drive is that disk.
//
// The kernel command line carries what the boot service gave this boot:
//
//	imagefarm.controller=HOST:PORT   the controller to report to
//	imagefarm.token=TOKEN            a one-time boot token (never printed)
//	imagefarm.then=poweroff|reboot   what to do once done; wait when absent
//	imagefarm.disk_serial=SERIAL     the disk the plan names, by serial
//	imagefarm.disk_size=BYTES        and size (both or neither)
//	BOOTIF=01-aa-bb-cc-dd-ee-ff      the NIC that netbooted (iPXE, pxelinux); all NICs when absent
package initproc
