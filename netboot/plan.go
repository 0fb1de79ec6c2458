package netboot

import (
	"context"
	"slices"
)

// planFor asks the planner what c's boot does and checks the answer. Every
// failure is a local boot, logged: a machine is never deployed by mistake.
func (s *Service) planFor(ctx context.Context, c Client) (Plan, DeployEnv) {
	log := s.log.With("mac", c.MAC.String(), "arch", c.Arch.String(), "chain", c.Chain.String())
	p, err := s.cfg.Planner.Plan(ctx, c)
	if err == nil {
		err = p.check()
	}
	env, haveEnv := s.envs.current()
	switch {
	case err != nil:
		log.Error("plan boot: booting the local disk", "err", err)
		return Plan{Reason: "the farm could not plan this boot, booting the local disk"}, env
	case p.Action == BootDeploy && !haveEnv:
		log.Error("plan boot: the plan deploys but the service has no deploy environment (kernel and initramfs): booting the local disk")
		return Plan{Reason: "no deploy environment on the boot service, booting the local disk"}, env
	case p.Action == BootWinPE && s.cfg.WinPE == nil:
		log.Error("plan boot: the plan boots WinPE but the service has none: start netboot serve with --wimboot FILE and --winpe NAME:VERSION; booting the local disk")
		return Plan{Reason: "no WinPE on the boot service (start netboot serve with --wimboot FILE), booting the local disk"}, env
	case p.Action == BootWinPE && c.Chain == ChainSigned:
		log.Error("plan boot: the plan boots WinPE, which boots through iPXE and wimboot, not the signed chain: give this machine the ipxe chain (--chain MAC=ipxe); booting the local disk")
		return Plan{Reason: "WinPE needs the iPXE chain, booting the local disk"}, env
	}
	log.Info("boot planned", "action", p.Action.String(), "reason", p.Reason, "env", env.ID,
		"serial", c.Serial, "product", c.Product, "client", c.Addr.String())
	return p, env
}

// kernelArgs is the deploy environment's kernel command line for c:
// Config.KernelArgs, BOOTIF (the MAC it booted from, as PXELINUX writes
// it), then the plan's.
func (s *Service) kernelArgs(c Client, p Plan) []string {
	args := append(slices.Clone(s.cfg.KernelArgs), "BOOTIF=01-"+hyphenMAC(c.MAC))
	return append(args, p.Args...)
}

// script is c's iPXE script for this boot.
func (s *Service) script(ctx context.Context, c Client) ([]byte, error) {
	p, env := s.planFor(ctx, c)
	return render(planScript, s.scriptData(c, p, env))
}

// grubConfig is c's GRUB config for this boot.
func (s *Service) grubConfig(ctx context.Context, c Client) ([]byte, error) {
	p, env := s.planFor(ctx, c)
	return render(grubPlan, s.scriptData(c, p, env))
}

// scriptData is what c's script or GRUB config for plan p is written
// from; a deploy loads env's files, by its id.
func (s *Service) scriptData(c Client, p Plan, env DeployEnv) scriptData {
	d := scriptData{Base: s.base, MAC: hyphenMAC(c.MAC), Arch: c.Arch.String(), EFI: c.Arch.EFI(),
		Deploy: p.Action == BootDeploy, Env: env.ID, Args: s.kernelArgs(c, p), Reason: p.Reason}
	if p.Action == BootWinPE && s.cfg.WinPE != nil {
		d.WinPE, d.WinPEID, d.WinPEFiles = true, s.cfg.WinPE.ID, s.cfg.WinPE.names()
	}
	return d
}
