package imager

// WrapDevices makes RunTasks write every drive it opens through wrap, so
// that a test can put a fault at the block layer under a real drive.
func WrapDevices(w *Writer, wrap func(Target) Device) { w.wrap = wrap }
