package state

import imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"

// CountTasks counts tasks per state, as Job.task_counts reports them.
func CountTasks(tasks []*imagefarmv1.Task) *imagefarmv1.TaskCounts {
	c := &imagefarmv1.TaskCounts{}
	for _, t := range tasks {
		switch t.GetState() {
		case imagefarmv1.TaskState_TASK_STATE_QUEUED:
			c.Queued++
		case imagefarmv1.TaskState_TASK_STATE_ASSIGNED:
			c.Assigned++
		case imagefarmv1.TaskState_TASK_STATE_FETCHING:
			c.Fetching++
		case imagefarmv1.TaskState_TASK_STATE_WRITING:
			c.Writing++
		case imagefarmv1.TaskState_TASK_STATE_VERIFYING:
			c.Verifying++
		case imagefarmv1.TaskState_TASK_STATE_DONE:
			c.Done++
		case imagefarmv1.TaskState_TASK_STATE_FAILED:
			c.Failed++
		case imagefarmv1.TaskState_TASK_STATE_CANCELED:
			c.Canceled++
		case imagefarmv1.TaskState_TASK_STATE_LOST:
			c.Lost++
		}
	}
	return c
}
