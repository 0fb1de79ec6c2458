// Package kmod owns which kernel module files a set of modules needs: it
// reads a kernel's modules tree (modules.dep, modules.softdep,
// modules.alias, modules.builtin, as depmod wrote them) and resolves
// names to files in the order modprobe would load them, each after the
// modules it depends on and its "pre" soft dependencies, before its
// "post" ones. There is no modprobe in the deploy environment, and the
// kernel's request_module finds nothing, so what a driver needs must be
// resolved when the environment is built.
//
// Read returns a module file's bytes whatever its compression (.ko,
// .ko.xz, .ko.zst, .ko.gz): the deploy environment holds them
// uncompressed, so loading needs no decompressor. A module's signature
// is appended to its uncompressed bytes, so a decompressed module still
// loads on a kernel that accepts only signed modules (Secure Boot's
// lockdown).
package kmod
