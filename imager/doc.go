// Package imager owns everything that happens on an imaging node: the agent
// (Agent) that takes assignments from NATS and reports to the controller over
// gRPC, the write pipeline that puts one image on many drives at once and
// proves each copy by reading it back from the device, and (in imager/drive)
// drive discovery and the guards that keep it from ever writing the wrong disk.
//
// The pipeline decompresses each chunk once, from the node cache, and hands
// the same aligned buffer to every drive that keeps pace; a drive that falls
// a window behind the fastest reads on its own instead of holding the others
// back. Drives fail alone, and at once: a drive that is pulled (its size
// drops to 0) or shrinks fails DRIVE_REMOVED at its next write or read, or
// within a second while it waits for the stream, and its result is reported
// without waiting for the others. When a job asks for it (check_capacity),
// each drive's real capacity is probed first (ProbeCapacity) and a
// counterfeit key, holding less than it advertises, fails FAKE_CAPACITY
// with nothing of the image written to it.
package imager
