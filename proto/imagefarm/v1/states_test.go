package imagefarmv1

import "testing"

// TestJobStateFinal covers every JobState value the enum declares, so a
// new value fails here until it is classified.
func TestJobStateFinal(t *testing.T) {
	want := map[JobState]bool{
		JobState_JOB_STATE_UNSPECIFIED: false,
		JobState_JOB_STATE_PENDING:     false,
		JobState_JOB_STATE_RUNNING:     false,
		JobState_JOB_STATE_SUCCEEDED:   true,
		JobState_JOB_STATE_PARTIAL:     true,
		JobState_JOB_STATE_FAILED:      true,
		JobState_JOB_STATE_CANCELED:    true,
	}
	for v := range JobState_name {
		s := JobState(v)
		w, ok := want[s]
		if !ok {
			t.Errorf("JobState %v is not in the table: say whether it is final", s)
			continue
		}
		if got := s.Final(); got != w {
			t.Errorf("%v.Final() = %v, want %v", s, got, w)
		}
	}
	if JobState(99).Final() {
		t.Errorf("JobState(99).Final() = true, want false (an unknown state is not final)")
	}
}

// TestTaskStateFinal covers every TaskState value the enum declares.
func TestTaskStateFinal(t *testing.T) {
	want := map[TaskState]bool{
		TaskState_TASK_STATE_UNSPECIFIED: false,
		TaskState_TASK_STATE_QUEUED:      false,
		TaskState_TASK_STATE_ASSIGNED:    false,
		TaskState_TASK_STATE_FETCHING:    false,
		TaskState_TASK_STATE_WRITING:     false,
		TaskState_TASK_STATE_VERIFYING:   false,
		TaskState_TASK_STATE_DONE:        true,
		TaskState_TASK_STATE_FAILED:      true,
		TaskState_TASK_STATE_CANCELED:    true,
		TaskState_TASK_STATE_LOST:        true,
	}
	for v := range TaskState_name {
		s := TaskState(v)
		w, ok := want[s]
		if !ok {
			t.Errorf("TaskState %v is not in the table: say whether it is final", s)
			continue
		}
		if got := s.Final(); got != w {
			t.Errorf("%v.Final() = %v, want %v", s, got, w)
		}
	}
	if TaskState(99).Final() {
		t.Errorf("TaskState(99).Final() = true, want false (an unknown state is not final)")
	}
}
