package main

import (
	"fmt"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/imagefarm/imagefarm/imager"
)

// driveBars shows one live bar per drive: its slot, phase, progress through
// writing then verifying, speed and ETA.
type driveBars struct {
	p      *mpb.Progress
	bars   []*mpb.Bar
	mu     sync.Mutex
	phases []string // what each drive is doing
	size   int64
}

func newDriveBars(plan []imager.Plan, targets []imager.Target, size int64) *driveBars {
	b := &driveBars{p: mpb.New(mpb.WithOutput(progressOutput()), mpb.WithWidth(30)), size: size}
	labels := map[string]string{}
	for _, p := range plan {
		labels[p.Drive.ID] = driveLabel(p.Drive)
	}
	for i, t := range targets {
		b.phases = append(b.phases, string(imager.PhaseWriting))
		b.bars = append(b.bars, b.p.AddBar(2*size,
			mpb.PrependDecorators(
				decor.Name(labels[t.ID], decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return b.phase(i) }, decor.WCSyncSpaceR),
			),
			mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), decor.Name("  "),
				decor.AverageSpeed(decor.SizeB1000(0), "% .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
		))
	}
	return b
}

func (b *driveBars) phase(i int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.phases[i]
}

// update is the imager's progress callback: writing fills the first half
// of a bar, verifying the second.
func (b *driveBars) update(i int, phase imager.Phase, done, total int64) {
	label := string(phase)
	if phase == imager.PhaseFetching && total > 0 {
		label = fmt.Sprintf("%s %d%%", phase, done*100/total)
	}
	b.mu.Lock()
	b.phases[i] = label
	b.mu.Unlock()
	switch phase {
	case imager.PhaseFetching, imager.PhaseChecking: // the phase shows it; the bar is the image's
	case imager.PhaseWriting, imager.PhaseSyncing:
		b.bars[i].SetCurrent(done)
	case imager.PhaseVerifying, imager.PhaseVerified:
		b.bars[i].SetCurrent(b.size + done)
	default:
		b.bars[i].Abort(false)
	}
}

// wait ends every bar and waits for the last render.
func (b *driveBars) wait() {
	for _, bar := range b.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	b.p.Wait()
}
