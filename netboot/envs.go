package netboot

import (
	"fmt"
	"strings"
	"sync"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// keepEnvs is how many versions of the deploy environment the service
// serves at once: the current one and the ones before it, for the boots
// that got a script naming them before it changed.
const keepEnvs = 3

// DeployEnv is one version of the deploy environment: its kernel and
// initramfs, and an id that names exactly these bytes (the catalog
// manifest's digest, shortened). Scripts name the files by id, so a boot
// in progress when the service takes a new version still loads the files
// it started with.
type DeployEnv struct {
	ID                string
	Kernel, Initramfs string
}

// envSet is the versions of the deploy environment the service serves:
// the newest is what plans deploy.
type envSet struct {
	mu     sync.RWMutex
	recent []DeployEnv // oldest first, at most keepEnvs
}

// current is the environment new boots get; ok is false when there is
// none.
func (e *envSet) current() (DeployEnv, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.recent) == 0 {
		return DeployEnv{}, false
	}
	return e.recent[len(e.recent)-1], true
}

// byID is the environment with id, while it is still served.
func (e *envSet) byID(id string) (DeployEnv, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, env := range e.recent {
		if env.ID == id {
			return env, true
		}
	}
	return DeployEnv{}, false
}

// SetEnv makes env the deploy environment the next boots get; the
// versions before it are still served to the boots that started with
// them, up to keepEnvs in all. Setting the current one again changes
// nothing.
func (s *Service) SetEnv(env DeployEnv) error {
	if err := env.check(); err != nil {
		return err
	}
	s.envs.mu.Lock()
	defer s.envs.mu.Unlock()
	if n := len(s.envs.recent); n > 0 && s.envs.recent[n-1] == env {
		return nil
	}
	for i, old := range s.envs.recent {
		if old.ID == env.ID {
			s.envs.recent = append(s.envs.recent[:i], s.envs.recent[i+1:]...)
			break
		}
	}
	s.envs.recent = append(s.envs.recent, env)
	if n := len(s.envs.recent); n > keepEnvs {
		s.envs.recent = s.envs.recent[n-keepEnvs:]
	}
	s.log.Info("deploy environment served to the next boots", "env", env.ID, "kernel", env.Kernel, "initramfs", env.Initramfs)
	return nil
}

// fileFor is the path of the deploy environment's file name (vmlinuz or
// initramfs), and ok false for any other name.
func (e DeployEnv) fileFor(name string) (string, bool) {
	switch name {
	case "vmlinuz":
		return e.Kernel, true
	case "initramfs":
		return e.Initramfs, true
	}
	return "", false
}

// check refuses an environment whose id cannot go in a URL or whose files
// are not there.
func (e DeployEnv) check() error {
	if err := checkVersionID(e.ID); err != nil {
		return fmt.Errorf("deploy environment id: %w", err)
	}
	for _, p := range []string{e.Kernel, e.Initramfs} {
		if err := userpath.CheckFile(p); err != nil {
			return fmt.Errorf("deploy environment file %s: %w", p, err)
		}
	}
	return nil
}

// checkVersionID checks the id of a version of files in URLs and TFTP
// names: 1 to 64 of a-z and 0-9 (a digest's hex).
func checkVersionID(id string) error {
	if id == "" || len(id) > 64 || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
		return fmt.Errorf("%q: want 1 to 64 of a-z and 0-9 (a digest's hex)", id)
	}
	return nil
}
