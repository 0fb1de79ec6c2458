package imager

import imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"

// PhaseState is the task state reported while a write is in phase p; ok
// is false for the final phases, which the result reports.
func PhaseState(p Phase) (s imagefarmv1.TaskState, ok bool) {
	s, ok = phaseStates[p]
	return s, ok
}
