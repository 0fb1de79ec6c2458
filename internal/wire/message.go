package wire

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// ErrInvalidMessage is wrapped by every error about a DispatchMessage that
// must not be published or acted on.
var ErrInvalidMessage = errors.New("wire: invalid message")

// Decode parses a message read from nodeID's subject and checks it the same
// way Publish does: an assignment must be for nodeID, name its task, epoch,
// drive and manifest digest; a cancel must name its task and epoch. Every
// error it returns wraps ErrInvalidMessage.
func Decode(data []byte, nodeID string) (*imagefarmv1.DispatchMessage, error) {
	var m imagefarmv1.DispatchMessage
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a DispatchMessage (%v): %w", err, ErrInvalidMessage)
	}
	switch b := m.GetBody().(type) {
	case *imagefarmv1.DispatchMessage_Assignment:
		if err := checkAssignment(b.Assignment, nodeID); err != nil {
			return nil, err
		}
	case *imagefarmv1.DispatchMessage_Cancel:
		if err := checkCancel(b.Cancel); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("neither an assignment nor a cancel")
	}
	return &m, nil
}

// checkAssignment refuses an assignment a node could never run safely. The
// drive id and digest are required because an imager must not guess which
// drive to wipe or what to write on it.
func checkAssignment(a *imagefarmv1.TaskAssignment, nodeID string) error {
	if a == nil {
		return invalid("empty assignment")
	}
	if err := checkTask("assignment", a.GetTaskId(), a.GetEpoch()); err != nil {
		return err
	}
	if a.GetNodeId() != nodeID {
		return invalid("assignment of task %s is for node %s, not %s",
			ident.Quote(a.GetTaskId()), ident.Quote(a.GetNodeId()), ident.Quote(nodeID))
	}
	if err := ident.DriveID(a.GetDrive().GetId()); err != nil {
		return invalid("assignment of task %s: %v", ident.Quote(a.GetTaskId()), err)
	}
	if err := ident.Digest(a.GetManifestDigest()); err != nil {
		return invalid("assignment of task %s: %v", ident.Quote(a.GetTaskId()), err)
	}
	return nil
}

func checkCancel(c *imagefarmv1.TaskCancel) error {
	if c == nil {
		return invalid("empty cancel")
	}
	return checkTask("cancel", c.GetTaskId(), c.GetEpoch())
}

// checkTask checks what goes into a message id (the task id, which
// ident.TaskID keeps to a header's characters). Epoch 0 is refused because
// proto3 cannot tell it from "not set", and an unfenced assignment would
// run under any epoch.
func checkTask(kind, taskID string, epoch uint64) error {
	if err := ident.TaskID(taskID); err != nil {
		return invalid("%s: %v", kind, err)
	}
	if epoch == 0 {
		return invalid("%s of task %s has no epoch", kind, ident.Quote(taskID))
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidMessage)
}

// assignmentMsgID and cancelMsgID are the Nats-Msg-Id values. They cannot
// collide: an assignment id ends in digits, a cancel id in "/cancel".
func assignmentMsgID(taskID string, epoch uint64) string {
	return taskID + "/" + strconv.FormatUint(epoch, 10)
}

func cancelMsgID(taskID string, epoch uint64) string {
	return assignmentMsgID(taskID, epoch) + "/cancel"
}
