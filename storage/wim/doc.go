// Package wim reads the metadata of Windows Imaging (WIM) files: the header
// and the XML document that describes each image (name, edition, Windows
// build, architecture, size). Pushing a blob of kind wim records this
// metadata in the image manifest, and a file that is not a WIM is refused.
//
// The package reads only the 208-byte header and the XML resource; it never
// decompresses file data, so it needs no LZX, XPRESS or LZMS decoder. It
// understands ordinary WIMs, ESD-style solid WIMs, split WIMs (.swm, each
// part read on its own) and wimlib's pipable WIMs.
//
// The layout follows Microsoft's WIM format as wimlib implements it; the
// tests check every field against what wimlib-imagex info reports for files
// that wimlib itself wrote.
package wim
