package gpt

// Partition type GUIDs the farm acts on, in the canonical text form.
const (
	TypeEFISystem       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeMSR             = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
	TypeBasicData       = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	TypeWindowsRecovery = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"
	TypeLinux           = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// typeNames are the names sgdisk and Windows give the types a depot meets.
var typeNames = map[string]string{
	TypeEFISystem:                          "EFI system",
	TypeMSR:                                "Microsoft reserved",
	TypeBasicData:                          "Microsoft basic data",
	TypeWindowsRecovery:                    "Windows recovery",
	TypeLinux:                              "Linux filesystem",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
	"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Microsoft LDM metadata",
	"AF9B60A0-1431-4F62-BC68-3311714A69AD": "Microsoft LDM data",
	"E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Microsoft storage spaces",
}

// TypeName is the name of a partition type GUID, or the GUID itself when
// the type is not one this package knows.
func TypeName(guid string) string {
	if n, ok := typeNames[guid]; ok {
		return n
	}
	return guid
}
