// Package devices keeps the records of the machines that netboot into the
// farm (imagefarmv1.Device) in a JetStream KV bucket, and owns the rules
// of what identifies one: its id, its MACs, its serial and its model.
package devices
