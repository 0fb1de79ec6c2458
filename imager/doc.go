// Package imager will own everything that happens on an imaging node: the
// agent loop, drive discovery and the wrong-disk guards, the write pipeline
// and read-back verification. It is built with issue 3.
package imager
