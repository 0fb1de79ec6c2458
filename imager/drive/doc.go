// Package drive owns what an imaging node knows about the disks attached to
// it and what keeps it from writing the wrong one.
//
// It discovers whole disks from sysfs: USB keys, docked SATA/NVMe drives,
// loop devices, and virtual drives (regular files in a folder, for the dev
// farm and tests). No udev database is needed; where one runs, it fills
// what sysfs lacks (a bridge's hidden serial, a WWN, the slot as udev
// names it) and never overrides an identity sysfs reads. Each drive gets a stable id, its
// physical slot and the label the node config gives that slot. Watch reports
// insertions and removals by polling.
//
// Before the write pipeline opens a drive it asks this package three times:
// Check runs the passive guards (system disk, node cache, mounted partitions,
// holders such as device-mapper, allow policy, size, read-only) and names the
// reason of every refusal; Reverify re-reads the drive just before opening it
// and refuses one whose identity changed since it was planned; OpenExclusive
// opens it with O_EXCL so that nothing else can hold it while it is written.
// Nothing in this package writes to a drive.
package drive
