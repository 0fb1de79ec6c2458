// Package device is the farm's side of a netbooted device's deploy
// environment: it enrolls the device with the boot token from the kernel
// command line, then, if the controller assigns it a task, writes the one
// internal disk the assignment names with the imager's own pipeline
// (imager.Writer: the same guards, signature check, fetch, write and
// read-back), reading the image through the controller (the device holds
// no store or NATS credentials), and reports over DeviceService.Report.
//
// The deploy environment's /init calls Run and then reboots or powers off
// as the Outcome says.
package device
