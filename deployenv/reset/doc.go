// Package reset is the reset engine of the deploy environment: it reimages
// the Windows partition of a device's disk in place and carries a keep-list
// across, the way Windows Autopilot Reset does from inside Windows, with
// Debian's tools doing the NTFS and WIM work (wimlib-imagex, mkntfs and the
// other ntfs-3g tools, hivexget and hivexsh from libhivex-bin).
//
// It owns only the disk. Whether a device may be reset (the policy), the job,
// the console and where State is kept belong to the farm (deployenv/device
// and the controller), which calls:
//
//	layout, err := reset.Preflight(ctx, plan)        // reads, never writes
//	report, err := reset.Run(ctx, plan, progress)    // the whole reset
//
// Run takes these steps, each announced to progress before it starts:
//
//   - preflight: the GPT is read; the Windows partition is found (the one
//     basic-data NTFS partition holding Windows/System32/config/SYSTEM, or
//     Plan.Partition); another partition must hold WinRE
//     (Recovery/WindowsRE/Winre.wim, or a WIM at the root of a partition of
//     the GPT recovery type), else ErrNotSupported, whose message carries
//     ERROR_NOT_SUPPORTED (0x80070032); the device must not be hybrid-joined
//     (Plan.Hybrid, or the offline SYSTEM hive shows both an Active Directory
//     domain, ControlSet\Services\Tcpip\Parameters Domain, and an Azure AD
//     join, ControlSet\Control\CloudDomainJoin\JoinInfo), else ErrHybridJoined.
//     Every partition but the Windows one is hashed.
//   - keep: the keep-list (KeepList plus Plan.Keep) is captured from the old
//     Windows volume with wimlib in NTFS-3G mode, so security descriptors,
//     named streams and attributes survive; the .ppkg files in
//     Plan.USBPackages are added under Recovery/Customizations; every kept
//     file is hashed. The capture, the label and the hashes go to Plan.State
//     before anything is written.
//   - format: mkntfs -Q re-creates the file system on the same partition
//     (same GPT entry, offset and size; the label kept), so the boot
//     configuration still points at it. User profiles, apps and settings are
//     gone by construction.
//   - apply: wimlib-imagex applies Plan.Image, index Plan.Index.
//   - restore: the keep capture is applied beside the image under a
//     temporary folder and moved into place through an ntfs-3g mount (a
//     rename inside the volume keeps every NTFS attribute).
//   - stage: the Plan.Stage folders are copied onto the volume.
//   - verify: every kept file is hashed again on the new volume, the old
//     profiles are checked gone, and the other partitions hashed again.
//
// The EFI, MSR and recovery partitions are only ever opened read-only. A
// refused reset writes nothing: no disk byte and no State. Keep paths are
// relative to the volume's root, wimlib globs allowed below the first
// element; a path that escapes the volume (.., absolute, a drive, a
// stream), keeps a whole top-level folder, or is under Users is refused, as
// is a link or junction among what the keep-list matches.
//
// The format is quick (mkntfs -Q): the old volume's clusters are not
// overwritten, only no longer reachable.
//
// Resuming: once the keep step has saved State, a Run after a crash at any
// later step (or a cancelled context) takes the keep-list from State, never
// from the half-written volume, and redoes format, apply, restore, stage and
// verify (announcing only those), ending in the same volume; a State saved
// for another disk or partition, or a damaged capture, is refused. A Run after a finished reset returns the
// saved Report. The farm gives each reset its own State; DirState is a folder
// (tests, a node cache).
package reset
