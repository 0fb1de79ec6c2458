// Command init is the /init of the tests' initramfs: it says on the serial
// console that the deploy environment runs (the marker), with the SMBIOS
// product, the kernel command line and whether the kernel reported Secure
// Boot enabled, then powers the VM off.
package main

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

func main() {
	_ = syscall.Mount("proc", "/proc", "proc", 0, "")
	_ = syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	cmdline, _ := os.ReadFile("/proc/cmdline")
	product, _ := os.ReadFile("/sys/class/dmi/id/product_name")
	fmt.Printf("\nIMAGEFARM-TEST-INIT product=%q secureboot=%v cmdline=%s\n",
		string(bytes.TrimSpace(product)), kernelSaid("Secure boot enabled"), bytes.TrimSpace(cmdline))
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

// kernelSaid reports whether the kernel's log has s: /dev/kmsg keeps what
// "quiet" keeps off the console. It is read with plain system calls:
// through os.File, the end of the log (EAGAIN) would wait for more.
func kernelSaid(s string) bool {
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil || n <= 0 {
			return false // EAGAIN: the end of the log
		}
		if bytes.Contains(buf[:n], []byte(s)) {
			return true
		}
	}
}
