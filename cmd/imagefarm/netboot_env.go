package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// buildEnvFlags are the flags of imagefarm netboot build-env.
type buildEnvFlags struct {
	kernel, modulesDir, init, out, push, signKey, ca string
	modules, channels, trustedKeys                   []string
	resetTools                                       bool
}

func newNetbootBuildEnvCmd(g *globals) *cobra.Command {
	var f buildEnvFlags
	cmd := &cobra.Command{
		Use:   "build-env --out FOLDER | --push NAME:VERSION",
		Short: "Build the deploy environment laptops netboot into: a kernel and an initramfs whose /init is imagefarm",
		Long: `Build the deploy environment: Debian's kernel (the newest /boot/vmlinuz-*, or
--kernel), the kernel modules a laptop's NICs and disks need with everything they
depend on, and an initramfs whose /init is this imagefarm binary (or --init: a
static Linux x86-64 executable, CGO_ENABLED=0). Two builds from the same inputs
give the same bytes. --out writes the folder (vmlinuz, initrd, env.json);
--push stores it in the catalog as an image of kind bootenv, which the boot
service serves.

--ca puts the farm CA in the initramfs, so the environment verifies the
controller's TLS certificate; --trusted-keys puts the image-signing public keys
there, so it refuses an image none of them signed, as an imager does. Without
--trusted-keys it writes unsigned images and says so in its IMAGEFARM-DEPLOY
line (warnings).

--reset-tools adds what resetting a device needs (imagefarm device reset): the
programs of wimtools, ntfs-3g and libhivex-bin with their shared libraries, and
the fuse module. It makes the initramfs about 15 MiB larger (25 to 41 MB with
Debian 12's packages, most of it ICU, which libxml2 needs for wimlib), so it
is off by default: a Secure Boot chain fetches the initramfs over TFTP.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuildEnv(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kernel, "kernel", "", "kernel image (default: the newest /boot/vmlinuz-*, from Debian's linux-image-amd64)")
	fl.StringVar(&f.modulesDir, "modules-dir", "", "the kernel's modules folder (default: /lib/modules/RELEASE, RELEASE read from the kernel)")
	fl.StringVar(&f.init, "init", "", "the program to run as /init (default: this imagefarm binary; it must be static)")
	fl.StringArrayVar(&f.modules, "module", nil, fmt.Sprintf("a kernel module to add to the defaults (repeatable); the defaults are %v", deployenv.DefaultModules))
	fl.StringVar(&f.out, "out", "", "folder to write the environment to (a new path)")
	fl.StringVar(&f.push, "push", "", "push the environment to the catalog as NAME:VERSION (kind bootenv)")
	fl.StringArrayVar(&f.channels, "channel", nil, "with --push: a channel to point at the version, such as stable (repeatable)")
	fl.StringVar(&f.signKey, "sign-key", os.Getenv("IMAGEFARM_SIGN_KEY"), signKeyUsage)
	fl.StringVar(&f.ca, "ca", "", "the farm CA's certificate (ca.crt) to put in the environment: it verifies the controller against it")
	fl.StringArrayVar(&f.trustedKeys, "trusted-keys", nil, "a file of image-signing public keys (signing.pub) to put in the environment: it refuses images none of them signed (repeatable)")
	fl.BoolVar(&f.resetTools, "reset-tools", false, "add the reset engine's programs (wimtools, ntfs-3g, libhivex-bin) and the fuse module, for device resets")
	fl.BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

func runBuildEnv(cmd *cobra.Command, g *globals, f buildEnvFlags) error {
	if f.out == "" && f.push == "" {
		return fmt.Errorf("nothing to do: pass --out FOLDER to write the environment, --push NAME:VERSION to store it in the catalog, or both")
	}
	var ref catalog.Ref
	var key *catalog.SigningKey
	var c *catalog.Catalog
	var refs refChanger
	if f.push != "" {
		var err error
		if ref, err = catalog.ParseRef(f.push); err != nil || ref.Digest != "" {
			return fmt.Errorf("--push %q: want NAME:VERSION", f.push)
		}
		if key, err = loadSignKey(f.signKey); err != nil {
			return err
		}
		if c, err = openCatalog(g, catalog.Options{}); err != nil {
			return err
		}
		var done func()
		if refs, done, err = openPushRefs(cmd, g, c, ref); err != nil {
			return err
		}
		defer done()
	}
	cfg, err := buildEnvConfig(f)
	if err != nil {
		return err
	}
	if f.out == "" {
		defer os.RemoveAll(filepath.Dir(cfg.Out))
	}
	start := time.Now()
	info, err := deployenv.Build(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	built := time.Since(start)
	var p *pushed
	if c != nil {
		path, source, cleanup, err := pushSource(cmd.Context(), cfg.Out, catalog.KindBootEnv)
		if err != nil {
			return err
		}
		defer cleanup()
		if p, err = pushFile(cmd, g, c, refs, path, catalog.PushOptions{
			Name: ref.Name, Version: ref.Tag, Kind: catalog.KindBootEnv, Source: source, Channels: f.channels, SignKey: key,
			Labels: map[string]string{"kernel": info.KernelRelease, "init_sha256": info.Init.SHA256[:16]},
		}); err != nil {
			return err
		}
	}
	return printBuildEnv(cmd, g, f.out, info, built, p)
}

// buildEnvConfig turns the flags into a BuildConfig. Without --out the
// environment is built in a temporary folder, removed once pushed.
func buildEnvConfig(f buildEnvFlags) (deployenv.BuildConfig, error) {
	k, err := deployenv.FindKernel(f.kernel, f.modulesDir)
	if err != nil {
		return deployenv.BuildConfig{}, err
	}
	cfg := deployenv.BuildConfig{Kernel: k, Init: f.init, Out: f.out, CA: f.ca, TrustedKeys: f.trustedKeys, ResetTools: f.resetTools}
	if cfg.Init == "" {
		if cfg.Init, err = os.Executable(); err != nil {
			return cfg, fmt.Errorf("find this imagefarm binary: %w; pass --init FILE", err)
		}
	}
	if len(f.modules) > 0 {
		cfg.Modules = append(append([]string{}, deployenv.DefaultModules...), f.modules...)
	}
	if cfg.Out == "" {
		tmp, err := os.MkdirTemp("", "imagefarm-bootenv-")
		if err != nil {
			return cfg, err
		}
		cfg.Out = filepath.Join(tmp, "bootenv")
	}
	return cfg, nil
}

// printBuildEnv says what was built (and pushed).
func printBuildEnv(cmd *cobra.Command, g *globals, out string, info *deployenv.Info, took time.Duration, p *pushed) error {
	w := cmd.OutOrStdout()
	if g.json {
		j := map[string]any{"kernel_release": info.KernelRelease, "init": info.Init, "modules": info.Modules,
			"files": info.Files, "trust": info.Trust, "seconds": took.Seconds()}
		if len(info.Builtin) > 0 {
			j["builtin"] = info.Builtin
		}
		if out != "" {
			j["out"] = out
		}
		if p != nil {
			j["push"] = p.json()
		}
		return printJSON(w, j)
	}
	fmt.Fprintf(w, "built a deploy environment for kernel %s in %.1fs, with %s\n", info.KernelRelease, took.Seconds(), plural(len(info.Modules), "kernel module"))
	for _, name := range []string{deployenv.KernelFile, deployenv.InitrdFile} {
		fi := info.Files[name]
		fmt.Fprintf(w, "  %-8s %9s  sha256:%s\n", name, bytesIEC(fi.Size), fi.SHA256)
	}
	printEnvTrust(w, info.Trust)
	if out != "" {
		fmt.Fprintf(w, "  written to %s\n", out)
	}
	if p != nil {
		return printPush(w, g, p)
	}
	return nil
}

// printEnvTrust says what the environment trusts.
func printEnvTrust(w io.Writer, t deployenv.Trust) {
	if t.CASHA256 != "" {
		fmt.Fprintf(w, "  farm CA  sha256:%s\n", t.CASHA256)
	} else {
		fmt.Fprintln(w, "  no farm CA (--ca): it reaches the controller only with imagefarm.insecure=1")
	}
	if len(t.KeyIDs) > 0 {
		fmt.Fprintf(w, "  trusts   %s\n", strings.Join(t.KeyIDs, ", "))
	} else {
		fmt.Fprintln(w, "  no trusted keys (--trusted-keys): it writes unsigned images, and says so")
	}
}
