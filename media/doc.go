// Package media builds bootable USB keys as disk images from catalog items:
// a WinPE boot bundle, one WIM, driver bundles and provisioning packages,
// with the scripts that deploy them. The image is pushed to the catalog as
// a disk image, so making keys by the hundred is an ordinary job.
//
// The key holds one FAT32 partition on an MBR table (package fatdisk says
// why MBR) with:
//
//	EFI/Boot/bootx64.efi, sources/boot.wim, ...   the WinPE bundle, at the root
//	images/install.wim                            the WIM, or images/install.swm,
//	                                              install2.swm, ... when it is split
//	drivers/<model>/<bundle name>/...             each driver bundle
//	ppkg/<name>.ppkg                              each provisioning package
//	updates/NN-<name>.msu (or .cab)               each update package, NN its place in the order
//	hooks/NN-<name>/<point>.cmd, ...              each hook folder, NN its place in the order
//	deploy.cmd                                    checks and partitions the disk it is given
//	                                              (or the only internal one), applies the WIM
//	                                              with DISM, adds updates in order, drivers and
//	                                              packages, runs bcdboot; runs the hooks'
//	                                              scripts at their points (HookPoints)
//	CreatePartitions-UEFI.txt                     the diskpart script for UEFI/GPT, run on the
//	                                              disk deploy.cmd selected
//
// A recovery key (Spec.Recovery) is instead a manufacturer's recovery
// drive, its files at the root as they are, with no scripts.
//
// The scripts are in scripts/, as they are on the key but for the template
// actions and line ends (CRLF on the key).
//
// FAT32 files are under 4 GiB, so a WIM larger than the split size (4000
// MiB by default) is split into .swm parts with wimlib-imagex, and deploy.cmd
// applies them with DISM's /SWMFile.
//
// The exact-model rule: an input whose manifest lists device models goes
// only on media for one of those models; an input that lists none is
// universal. Every input is checked before a byte is downloaded.
//
// The same inputs give the same image, byte for byte: the bundles and the
// file system are laid out in a fixed order, every time stamp is the newest
// input's creation time, the volume serial, disk signature and the GUID of
// an exported or split WIM are derived from the inputs' digests.
package media
