// Package userpath owns the paths a person gives a command: files it reads
// (an image to push, a key, a certificate, a config), folders it reads or
// makes, and files it writes (a pulled image, media, keys, tokens).
//
// A path to read must be a regular file (or a folder where one is asked
// for): a FIFO, whose open blocks until something writes to it, a socket, a
// device or a folder where a file is expected is refused at once, naming
// the path, what it is and what to give instead. A path to write must be
// new or an existing regular file: never a device node, FIFO or socket, nor
// a symbolic link to one, so that "pull to /dev/null" or "/dev/sdb" cannot
// replace a device node with a file. Output is written to a hidden
// temporary file beside the path and renamed over it once complete; a
// failed or interrupted write leaves nothing at the path.
package userpath
