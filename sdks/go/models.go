package stepline

import (
	"strings"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
)

// Status is where a workflow is in its life: "ENQUEUED", "RUNNING", "SUCCEEDED", ...
type Status string

// The workflow statuses.
const (
	StatusEnqueued                    Status = "ENQUEUED"
	StatusRunning                     Status = "RUNNING"
	StatusSucceeded                   Status = "SUCCEEDED"
	StatusFailed                      Status = "FAILED"
	StatusCancelled                   Status = "CANCELLED"
	StatusMaxRecoveryAttemptsExceeded Status = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
	StatusTimedOut                    Status = "TIMED_OUT"
	StatusPaused                      Status = "PAUSED"
)

// Final reports whether the status is one a workflow ends in (PAUSED counts, as for
// clients awaiting it).
func (s Status) Final() bool {
	return s != StatusEnqueued && s != StatusRunning && s != ""
}

func statusOf(s pb.WorkflowStatus) Status {
	if s == pb.WorkflowStatus_WORKFLOW_STATUS_UNSPECIFIED {
		return ""
	}
	return Status(strings.TrimPrefix(s.String(), "WORKFLOW_STATUS_"))
}

func statusToPB(s Status) pb.WorkflowStatus {
	return pb.WorkflowStatus(pb.WorkflowStatus_value["WORKFLOW_STATUS_"+string(s)])
}

// WorkflowInfo is everything recorded about one workflow.
type WorkflowInfo struct {
	ID, Name         string
	Status           Status
	Input, Output    []byte // JSON (empty in listings unless payloads were asked for)
	Error            *Error // when FAILED, TIMED_OUT, PAUSED, ...
	Owner            string
	Epoch            int64
	RecoveryAttempts int32
	CreatedAt        time.Time
	UpdatedAt        time.Time
	StartedAt        time.Time // zero before a worker first received it
	CompletedAt      time.Time // zero before it finished
	Deadline         time.Time // zero when it never times out
	Suspended        bool
	ParentID         string
	ParentStepID     string
}

// StepInfo is everything recorded about one step of a workflow.
type StepInfo struct {
	ID, Name    string
	Kind        string // "STEP", "SLEEP", "RECV", "GET_EVENT", "SEND", "SET_EVENT", ...
	Status      string // "RUNNING", "SUCCEEDED", "FAILED", "WAITING"
	Output      []byte
	Error       *Error
	Attempts    int32
	WorkerID    string
	Epoch       int64
	StartedAt   time.Time
	CompletedAt time.Time
	TimedOut    bool
	WakeAt      time.Time
}

type timestamp interface {
	IsValid() bool
	AsTime() time.Time
}

func timeOf(t timestamp) time.Time {
	if t == nil || !t.IsValid() {
		return time.Time{}
	}
	return t.AsTime()
}

func workflowInfo(w *pb.WorkflowInfo) WorkflowInfo {
	info := WorkflowInfo{
		ID: w.GetWorkflowId(), Name: w.GetWorkflowName(), Status: statusOf(w.GetStatus()),
		Input: w.GetInput().GetData(), Output: w.GetOutput().GetData(),
		Owner: w.GetOwnerWorkerId(), Epoch: w.GetEpoch(), RecoveryAttempts: w.GetRecoveryAttempts(),
		Suspended: w.GetSuspended(), ParentID: w.GetParentWorkflowId(), ParentStepID: w.GetParentStepId(),
	}
	if w.GetError() != nil {
		info.Error = fromErrorInfo(w.GetError())
	}
	if w.CreatedAt != nil {
		info.CreatedAt = timeOf(w.CreatedAt)
	}
	if w.UpdatedAt != nil {
		info.UpdatedAt = timeOf(w.UpdatedAt)
	}
	if w.StartedAt != nil {
		info.StartedAt = timeOf(w.StartedAt)
	}
	if w.CompletedAt != nil {
		info.CompletedAt = timeOf(w.CompletedAt)
	}
	if w.Deadline != nil {
		info.Deadline = timeOf(w.Deadline)
	}
	return info
}

func stepInfo(s *pb.StepInfo) StepInfo {
	info := StepInfo{
		ID: s.GetStepId(), Name: s.GetStepName(),
		Kind:   strings.TrimPrefix(s.GetKind().String(), "STEP_KIND_"),
		Status: strings.TrimPrefix(s.GetStatus().String(), "STEP_STATUS_"),
		Output: s.GetOutput().GetData(), Attempts: s.GetAttempts(), WorkerID: s.GetWorkerId(),
		Epoch: s.GetEpoch(), TimedOut: s.GetTimedOut(),
	}
	if s.GetError() != nil {
		info.Error = fromErrorInfo(s.GetError())
	}
	if s.StartedAt != nil {
		info.StartedAt = timeOf(s.StartedAt)
	}
	if s.CompletedAt != nil {
		info.CompletedAt = timeOf(s.CompletedAt)
	}
	if s.WakeAt != nil {
		info.WakeAt = timeOf(s.WakeAt)
	}
	return info
}
