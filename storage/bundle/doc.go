// Package bundle owns how a folder becomes one blob: the kinds winpe (the
// files of a WinPE media folder) and drivers (a driver folder for one or
// more device models) are folders of files, and the catalog stores blobs.
//
// A bundle is a tar archive (ustar, with PAX records only for names ustar
// cannot hold) whose bytes depend only on the folder's relative paths and
// file contents: the names in each folder in lexical (byte) order, each
// folder before what it holds; every time the Unix epoch, uid and gid 0,
// no user or group names, mode 0755 for folders and 0644 for files.
// Pushing the same folder twice gives the same blob, so chunking and dedup
// apply as for any file, and a folder whose files barely changed costs only
// the chunks that did. Only folders and regular files are allowed; a
// symbolic link or device is refused, naming it, so a bundle unpacks the
// same on every machine.
//
// Pulling a bundle unpacks it into a new folder (or keeps the tar, with
// image pull --tar), refusing entries that would leave that folder.
package bundle
