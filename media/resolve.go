package media

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// resolver reads inputs' manifests and checks each one's kind and model,
// so that a wrong input is refused before any download.
type resolver struct {
	c      *catalog.Catalog
	model  string
	inputs []Input
	names  map[string]catalog.Ref
}

func (r *resolver) add(ctx context.Context, role string, kind catalog.Kind, ref catalog.Ref) error {
	m, digest, err := r.c.Manifest(ctx, ref)
	if err != nil {
		return fmt.Errorf("media: --%s %s: %w", role, ref, err)
	}
	if m.Kind != kind {
		return fmt.Errorf("%w: --%s %s is %s image, want %s", ErrWrongKind, role, ref, m.Kind.Article(), kind)
	}
	if !m.AppliesTo(r.model) {
		return modelMismatch(role, ref, m.Models, r.model)
	}
	// Bundles and packages are placed by image name, so a name twice
	// would put two versions of one thing on the key.
	if prev, ok := r.names[role+"/"+ref.Name]; ok {
		return fmt.Errorf("media: --%s %s and %s are versions of one image; give each once", role, prev, ref)
	}
	if r.names == nil {
		r.names = map[string]catalog.Ref{}
	}
	r.names[role+"/"+ref.Name] = ref
	r.inputs = append(r.inputs, Input{Role: role, Ref: ref, Digest: digest, Manifest: m})
	return nil
}

// addAll adds refs of one role and kind, in order.
func (r *resolver) addAll(ctx context.Context, role string, kind catalog.Kind, refs []catalog.Ref) error {
	for _, ref := range refs {
		if err := r.add(ctx, role, kind, ref); err != nil {
			return err
		}
	}
	return nil
}

// customisations adds update packages and hooks, checking that each
// update was pushed as a .msu or .cab.
func (r *resolver) customisations(ctx context.Context, updates, hooks []catalog.Ref) error {
	for _, ref := range updates {
		if err := r.add(ctx, "updates", catalog.KindUpdate, ref); err != nil {
			return err
		}
		if _, err := UpdateExt(r.inputs[len(r.inputs)-1].Manifest.Source); err != nil {
			return fmt.Errorf("media: --updates %s: %w", ref, err)
		}
	}
	return r.addAll(ctx, "hook", catalog.KindHook, hooks)
}

// resolve reads every input of a key's spec and checks its kind, the
// model and the WIM index.
func resolve(ctx context.Context, c *catalog.Catalog, spec Spec) ([]Input, error) {
	r := &resolver{c: c, model: spec.Model}
	if spec.Recovery.Name != "" {
		if spec.WinPE.Name != "" || spec.WIM.Name != "" || spec.WIMIndex != 0 || len(spec.Drivers)+len(spec.PPKGs)+len(spec.Updates)+len(spec.Hooks) > 0 {
			return nil, errors.New("media: --recovery lays a manufacturer's recovery drive onto the key as it is; " +
				"it takes no --winpe, --wim, --wim-index, --drivers, --ppkg, --updates or --hook (build a WinPE key for those)")
		}
		err := r.add(ctx, "recovery", catalog.KindRecovery, spec.Recovery)
		return r.inputs, err
	}
	if err := r.add(ctx, "winpe", catalog.KindWinPE, spec.WinPE); err != nil {
		return nil, err
	}
	if err := r.add(ctx, "wim", catalog.KindWIM, spec.WIM); err != nil {
		return nil, err
	}
	if err := checkWIM(r.inputs[1], spec.WIMIndex); err != nil {
		return nil, err
	}
	if err := r.addAll(ctx, "drivers", catalog.KindDrivers, spec.Drivers); err != nil {
		return nil, err
	}
	if err := r.addAll(ctx, "ppkg", catalog.KindPPKG, spec.PPKGs); err != nil {
		return nil, err
	}
	if err := r.customisations(ctx, spec.Updates, spec.Hooks); err != nil {
		return nil, err
	}
	return r.inputs, nil
}

func modelMismatch(role string, ref catalog.Ref, models []string, model string) error {
	quoted := make([]string, len(models))
	for i, m := range models {
		quoted[i] = strconv.Quote(m)
	}
	for_ := "media for no model in particular; give the model the key is for"
	if model != "" {
		for_ = fmt.Sprintf("media for %q", model)
	}
	return fmt.Errorf("%w: --%s %s is only for %s, not for %s", ErrModelMismatch, role, ref, strings.Join(quoted, ", "), for_)
}

func checkWIM(in Input, index int) error {
	w := in.Manifest.WIM
	switch {
	case w == nil:
		return fmt.Errorf("%w: --wim %s has no WIM metadata; push it again with --kind wim", ErrWrongKind, in.Ref)
	case w.TotalParts > 1:
		return fmt.Errorf("%w: --wim %s is part %d of a %d-part split WIM; push the whole WIM", ErrWrongKind, in.Ref, w.Part, w.TotalParts)
	case index < 0 || index > w.ImageCount:
		return fmt.Errorf("media: --wim %s has %d images; index %d is not one of them", in.Ref, w.ImageCount, index)
	}
	return nil
}
