package initproc

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Identity is who the device is, as its firmware (SMBIOS, through
// /sys/class/dmi/id) and its NICs say.
type Identity struct {
	Vendor  string `json:"vendor"`  // sys_vendor: "HP", "LENOVO", "Dell Inc."
	Product string `json:"product"` // product_name: the model ("HP EliteBook 840 G7"; a machine type such as "20S0CTO1WW" on a Lenovo)
	// Version is product_version: a Lenovo's model name ("ThinkPad T14
	// Gen 1"), where its product_name is a machine type.
	Version string `json:"version,omitempty"`
	Family  string `json:"family,omitempty"` // product_family
	SKU     string `json:"sku,omitempty"`    // product_sku
	Serial  string `json:"serial"`           // product_serial
	UUID    string `json:"uuid"`             // product_uuid, lower case
	NICs    []NIC  `json:"nics"`
}

// NIC is one physical network interface.
type NIC struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	Driver string `json:"driver,omitempty"`
}

// ReadIdentity reads the device's identity from sysfs mounted at sysRoot
// ("/sys"). A field the firmware leaves out is "". Placeholders that
// vendors ship in unset fields ("To be filled by O.E.M.", "Default
// string", a UUID of all zeros or all Fs) read as "", so that they never
// identify two devices as one.
func ReadIdentity(sysRoot string) Identity {
	dmi := func(f string) string {
		b, _ := os.ReadFile(filepath.Join(sysRoot, "class/dmi/id", f))
		return unset(strings.TrimSpace(string(b)))
	}
	return Identity{
		Vendor: dmi("sys_vendor"), Product: dmi("product_name"), Version: dmi("product_version"),
		Family: dmi("product_family"), SKU: dmi("product_sku"), Serial: dmi("product_serial"),
		UUID: uuid(dmi("product_uuid")), NICs: readNICs(sysRoot),
	}
}

// placeholders are what firmware says in an SMBIOS field nobody set.
var placeholders = []string{
	"to be filled by o.e.m.", "default string", "system serial number", "system product name",
	"system manufacturer", "not specified", "not applicable", "none", "0", "o.e.m.", "oem", "123456789",
}

func unset(s string) string {
	if slices.Contains(placeholders, strings.ToLower(s)) {
		return ""
	}
	return s
}

func uuid(s string) string {
	s = strings.ToLower(s)
	if strings.Trim(s, "0-") == "" || strings.Trim(s, "f-") == "" {
		return ""
	}
	return s
}

// readNICs lists the interfaces backed by a device (not lo, bridges,
// tunnels) that are Ethernet (ARPHRD_ETHER), by name.
func readNICs(sysRoot string) []NIC {
	dir := filepath.Join(sysRoot, "class/net")
	ents, _ := os.ReadDir(dir)
	nics := []NIC{}
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(d, "device")); err != nil || attr(d, "type") != "1" {
			continue
		}
		mac, err := net.ParseMAC(attr(d, "address"))
		if err != nil {
			continue
		}
		nic := NIC{Name: e.Name(), MAC: mac.String()}
		if drv, err := os.Readlink(filepath.Join(d, "device/driver")); err == nil {
			nic.Driver = filepath.Base(drv)
		}
		nics = append(nics, nic)
	}
	return nics
}

func attr(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return strings.TrimSpace(string(b))
}
