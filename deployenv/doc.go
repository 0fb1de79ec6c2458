// Package deployenv owns the deploy environment: the kernel and
// initramfs a laptop netboots into, whose /init is the imagefarm binary
// itself (package deployenv/initproc is what it runs).
//
// Build makes one from a kernel (Debian's linux-image-amd64), the kernel
// modules a laptop's network and disks need (deployenv/kmod resolves
// what they depend on) and a static imagefarm binary. Its bytes depend
// only on those inputs: two builds give the same files, so the catalog
// stores a rebuilt environment as chunks it already has. An environment
// is a folder (KernelFile, InitrdFile, InfoFile) pushed to the catalog as
// a bundle of kind bootenv; Fetch is how the boot service gets one into
// its cache, signature and every byte checked, before it serves it, and a
// Follower fetches each new version a channel moves to (Service.SetEnv
// serves it to the next boots).
package deployenv
