package initproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/deployenv"
)

// loadModules loads every module the environment holds, in the order
// its load-order file lists them, with u-root's kmodule (which loads
// what each needs first, from the environment's modules.dep). A module
// that fails is named in the error; the others still load, so a laptop
// whose Wi-Fi driver fails still gets its Ethernet. A module that says
// ENODEV is for hardware this device lacks (crct10dif_pclmul on a CPU
// without PCLMULQDQ): that is no failure.
func loadModules(release string) (loaded int, err error) {
	dir := filepath.Join("/lib/modules", release)
	order, err := os.ReadFile(filepath.Join(dir, deployenv.LoadOrderFile))
	if err != nil {
		return 0, fmt.Errorf("kernel modules: %w (the environment holds modules for another kernel than %s?)", err, release)
	}
	p, err := kmodule.NewProber(kmodule.ProbeOpts{KVer: release})
	if err != nil {
		return 0, fmt.Errorf("kernel modules: %w", err)
	}
	var failed bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(order))
	for sc.Scan() {
		name := sc.Text()
		err := p.Probe(name, "")
		if errors.Is(err, unix.ENODEV) {
			continue
		}
		if err != nil {
			fmt.Fprintf(&failed, "; %s: %v", name, err)
			continue
		}
		loaded++
	}
	if failed.Len() > 0 {
		return loaded, fmt.Errorf("kernel modules that did not load: %s", failed.Bytes()[2:])
	}
	return loaded, nil
}
