package imagefarmv1

// This file is written by hand, not generated: the rules about the enums'
// values that every package shares.

// Final reports whether a job in state s will never change again:
// SUCCEEDED, PARTIAL, FAILED or CANCELED.
func (s JobState) Final() bool {
	switch s {
	case JobState_JOB_STATE_SUCCEEDED, JobState_JOB_STATE_PARTIAL,
		JobState_JOB_STATE_FAILED, JobState_JOB_STATE_CANCELED:
		return true
	}
	return false
}

// Final reports whether a task in state s will never change again:
// DONE, FAILED, CANCELED or LOST. A final task no longer holds its drive,
// and the controller refuses later reports for it.
func (s TaskState) Final() bool {
	switch s {
	case TaskState_TASK_STATE_DONE, TaskState_TASK_STATE_FAILED,
		TaskState_TASK_STATE_CANCELED, TaskState_TASK_STATE_LOST:
		return true
	}
	return false
}

// Final reports whether a rollout in state s will never change again:
// DONE, ABORTED or SUPERSEDED.
func (s RolloutState) Final() bool {
	switch s {
	case RolloutState_ROLLOUT_STATE_DONE, RolloutState_ROLLOUT_STATE_ABORTED,
		RolloutState_ROLLOUT_STATE_SUPERSEDED:
		return true
	}
	return false
}
