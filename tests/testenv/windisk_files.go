package testenv

import (
	"os"
	"testing"
)

// windowsFiles is what the Windows volume of a WindowsDisk holds: a user's
// files, Wi-Fi profiles, a provisioning package, WinRE's configuration.
func windowsFiles() map[string]string {
	return map[string]string{
		AliceDocument:                     "alice's notes: personal, must not survive a reset\n",
		"Users/alice/NTUSER.DAT":          "regf alice's registry hive (not a real hive)\n",
		"Users/Public/Desktop/readme.txt": "public desktop\n",
		"Windows/System32/ntoskrnl.exe":   "MZ old Windows kernel\n",
		"Windows/System32/Recovery/ReAgent.xml": `<?xml version='1.0' encoding='utf-8' standalone='yes'?>
<WindowsRE version="2.0"><WinreBCD id="{a1b2c3d4-0000-4000-8000-000000000004}"/><WinreLocation path="\Recovery\WindowsRE" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}"/></WindowsRE>
`,
		WiFiProfileDir + "/{0D1E2F3A-4B5C-4D6E-8F70-8192A3B4C5D6}.xml": wifiProfile("Depot-5G"),
		WiFiProfileDir + "/{1A2B3C4D-5E6F-4A8B-9C0D-1E2F3A4B5C6D}.xml": wifiProfile("Depot-Guest"),
		ProvisioningPackage: "PK\x03\x04 provisioning package of the test disk\n",
	}
}

// wifiProfile is a WLAN profile as Windows stores one.
func wifiProfile(ssid string) string {
	return `<?xml version="1.0"?>
<WLANProfile xmlns="http://www.microsoft.com/networking/WLAN/profile/v1">
	<name>` + ssid + `</name>
	<SSIDConfig><SSID><name>` + ssid + `</name></SSID></SSIDConfig>
	<connectionType>ESS</connectionType>
	<connectionMode>auto</connectionMode>
	<MSM><security><authEncryption><authentication>WPA2PSK</authentication><encryption>AES</encryption></authEncryption></security></MSM>
</WLANProfile>
`
}

// recoveryFiles is what the recovery volume holds: WinRE as a WIM captured
// by wimlib, unless noWinRE.
func recoveryFiles(t testing.TB, noWinRE bool) map[string]string {
	t.Helper()
	files := map[string]string{"Recovery/WindowsRE/boot.sdi": "boot.sdi of the test disk\n"}
	if noWinRE {
		return files
	}
	winre := CaptureWIM(t, map[string]string{
		"Windows/System32/winpeshl.ini": "[LaunchApps]\nrecenv.exe\n",
		"Windows/System32/recenv.exe":   "MZ recovery environment\n",
	}, "Microsoft Windows Recovery Environment (x64)")
	b, err := os.ReadFile(winre)
	if err != nil {
		t.Fatal(err)
	}
	files[WinREImage] = string(b)
	return files
}
