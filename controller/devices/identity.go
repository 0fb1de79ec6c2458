package devices

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// ErrInvalid is wrapped by every identity that breaks its rule.
var ErrInvalid = errors.New("devices: invalid identity")

// MaxTextLen bounds SMBIOS strings (serial, vendor, model) and MAC lists.
const (
	MaxTextLen = 128
	MaxMACs    = 32
	MaxDisks   = 64
)

// NormalizeMAC reads a MAC address in any form net.ParseMAC does and
// returns it as "aa:bb:cc:dd:ee:ff". Only 6-byte (Ethernet) addresses are
// accepted: PXE and iPXE name interfaces by them.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six bytes such as aa:bb:cc:dd:ee:ff: %w", cut(s), ErrInvalid)
	}
	return hw.String(), nil
}

// NormalizeMACs normalizes each MAC and drops repeats, keeping the order.
func NormalizeMACs(in []string) ([]string, error) {
	if len(in) > MaxMACs {
		return nil, fmt.Errorf("%d MACs: at most %d: %w", len(in), MaxMACs, ErrInvalid)
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		m, err := NormalizeMAC(s)
		if err != nil {
			return nil, err
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// CheckText checks an SMBIOS string: at most MaxTextLen bytes of printable
// text, no control characters (which would rewrite a technician's terminal).
func CheckText(field, s string) error {
	if len(s) > MaxTextLen {
		return fmt.Errorf("%s: %d bytes, at most %d: %w", field, len(s), MaxTextLen, ErrInvalid)
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q: control or invisible character %U: %w", field, cut(s), r, ErrInvalid)
		}
	}
	return nil
}

// CheckIdentity refuses an identity whose strings break CheckText, or
// that has neither a UUID nor a serial to know the device by again.
func CheckIdentity(id *imagefarmv1.DeviceIdentity) error {
	for _, f := range []struct{ name, v string }{{"uuid", id.GetUuid()}, {"serial", id.GetSerial()},
		{"vendor", id.GetVendor()}, {"model", id.GetModel()}} {
		if err := CheckText(f.name, f.v); err != nil {
			return err
		}
	}
	if ID(id) == "" {
		return fmt.Errorf("the firmware reports neither a usable SMBIOS UUID nor a serial: the device cannot be told apart from others: %w", ErrInvalid)
	}
	return nil
}

// ID is a device's id: its SMBIOS UUID in lowercase when it has a real one,
// else "sn-" and a hash of its vendor, model and serial; "" when it has
// neither (the firmware's placeholders count as none).
func ID(id *imagefarmv1.DeviceIdentity) string {
	if u := normalUUID(id.GetUuid()); u != "" {
		return u
	}
	serial := strings.TrimSpace(id.GetSerial())
	if serial == "" || placeholder(serial) {
		return ""
	}
	sum := sha256.Sum256([]byte(id.GetVendor() + "\x00" + id.GetModel() + "\x00" + serial))
	return "sn-" + hex.EncodeToString(sum[:10])
}

// normalUUID is u as 36 lowercase characters, or "" when it is not a UUID
// or is one of the values firmware reports when it has none.
func normalUUID(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	if len(u) != 36 {
		return ""
	}
	hexOnly := strings.ReplaceAll(u, "-", "")
	if _, err := hex.DecodeString(hexOnly); err != nil || len(hexOnly) != 32 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-' {
		return ""
	}
	if strings.Trim(hexOnly, "0") == "" || strings.Trim(hexOnly, "f") == "" || hexOnly == "03000200040005000006000700080009" {
		return ""
	}
	return u
}

// placeholder reports whether a serial is what firmware says for none.
func placeholder(serial string) bool {
	switch strings.ToLower(serial) {
	case "to be filled by o.e.m.", "default string", "system serial number", "none", "n/a", "not specified", "0", "0123456789":
		return true
	}
	return false
}

// cut shortens what a message quotes back.
func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
