package wire

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func encode(t testing.TB, m *imagefarmv1.DispatchMessage) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func wrapAssignment(a *imagefarmv1.TaskAssignment) *imagefarmv1.DispatchMessage {
	return &imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{Assignment: a}}
}

func wrapCancel(c *imagefarmv1.TaskCancel) *imagefarmv1.DispatchMessage {
	return &imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Cancel{Cancel: c}}
}

func TestDecode(t *testing.T) {
	edit := func(f func(a *imagefarmv1.TaskAssignment)) []byte {
		a := assignment("bench-a", "task-1", 4)
		f(a)
		return encode(t, wrapAssignment(a))
	}
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"assignment", encode(t, wrapAssignment(assignment("bench-a", "task-1", 4))), true},
		{"cancel", encode(t, wrapCancel(&imagefarmv1.TaskCancel{TaskId: "task-1", Epoch: 4})), true},
		{"not protobuf", []byte("\xff\xff\xff"), false},
		{"json", []byte(`{"assignment":{"task_id":"t"}}`), false},
		{"empty", nil, false},
		{"empty assignment", encode(t, wrapAssignment(&imagefarmv1.TaskAssignment{})), false},
		{"other node", edit(func(a *imagefarmv1.TaskAssignment) { a.NodeId = "bench-b" }), false},
		{"no task id", edit(func(a *imagefarmv1.TaskAssignment) { a.TaskId = "" }), false},
		{"task id with space", edit(func(a *imagefarmv1.TaskAssignment) { a.TaskId = "a b" }), false},
		{"huge task id", edit(func(a *imagefarmv1.TaskAssignment) { a.TaskId = strings.Repeat("t", 257) }), false},
		{"epoch 0", edit(func(a *imagefarmv1.TaskAssignment) { a.Epoch = 0 }), false},
		{"no drive", edit(func(a *imagefarmv1.TaskAssignment) { a.Drive = nil }), false},
		{"bad digest", edit(func(a *imagefarmv1.TaskAssignment) { a.ManifestDigest = "sha256:../../x" }), false},
		{"cancel without task", encode(t, wrapCancel(&imagefarmv1.TaskCancel{Epoch: 4})), false},
		{"cancel without epoch", encode(t, wrapCancel(&imagefarmv1.TaskCancel{TaskId: "task-1"})), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.data, "bench-a")
			if tt.ok && err != nil {
				t.Errorf("Decode() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("Decode() = %v, want %v", err, ErrInvalidMessage)
			}
		})
	}
}

// FuzzDecode checks that no input panics the decoder and that what it
// accepts is something Publish would have sent.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, wrapAssignment(assignment("bench-a", "task-1", 4))))
	f.Add(encode(f, wrapCancel(&imagefarmv1.TaskCancel{TaskId: "task-1", Epoch: 4})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, "bench-a")
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("Decode() = %v, want it to wrap %v", err, ErrInvalidMessage)
			}
			return
		}
		if a := m.GetAssignment(); a != nil {
			if err := checkAssignment(a, "bench-a"); err != nil {
				t.Fatalf("Decode accepted an assignment Publish refuses: %v", err)
			}
			return
		}
		if err := checkCancel(m.GetCancel()); err != nil {
			t.Fatalf("Decode accepted a cancel Publish refuses: %v", err)
		}
	})
}
