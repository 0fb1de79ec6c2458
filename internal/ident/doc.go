// Package ident owns the rule for every kind of name imagefarm accepts:
// which characters, how long, and why. Every component (the catalog, the
// controller's API and store, the scheduler, the NATS wire, the farm CA,
// drive discovery and the CLI) checks a name with the checker here, so
// that a name one of them accepts, every other one accepts too.
//
// The rules, and what makes each one what it is:
//
//	image name    1-128 of A-Z a-z 0-9 . _ + -, starting with a letter or
//	              digit, no ".."     a path element of store keys
//	version       the same as an image name                (refs/NAME/versions/VERSION)
//	channel       the same as an image name                (refs/NAME/channels/CHANNEL)
//	image ref     NAME:VERSION, NAME:CHANNEL or NAME@DIGEST, at most
//	              MaxRefLen (257) bytes: whatever the parts allow
//	digest        sha256: and 64 lowercase hex digits
//	node id       1-64 of A-Z a-z 0-9 _ -      a NATS subject token, a
//	              consumer and user name, a certificate's URI, a KV key
//	client name   the same as a node id                    (a certificate's URI)
//	drive id      1-255 of A-Z a-z 0-9 . _ : - what drive discovery makes
//	              of serials, WWNs and file names; no '/' (NODE/DRIVE)
//	job id        1-128 of A-Z a-z 0-9 _ -     a KV key and a subject token
//	task id       the same as a job id
//	label key     1-63 of A-Z a-z 0-9 . _ -    typed as KEY=VALUE
//	label value   0-255 bytes of printable text, spaces allowed
//	pool          0-255 bytes of printable text ("" is no pool)
//	slot label    0-255 bytes of printable text ("" is none)
//	token name    1-64 of A-Z a-z 0-9 . _ @ -
//	request id    1-128 of visible ASCII (! to ~)
//
// Printable text is valid UTF-8 made of letters, marks, numbers,
// punctuation, symbols and the ASCII space: no control characters, no
// invisible format characters (which could make two names look alike or
// reorder a table), no other spaces.
//
// Every checker returns nil or an *Error that wraps ErrInvalid and says
// which kind of name, the value (quoted and cut short by Quote), what is
// wrong with it, the rule, and what to do.
package ident
