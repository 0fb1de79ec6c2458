package state

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

const (
	// DefaultPageSize is ListJobs' page size when the filter sets none.
	DefaultPageSize = 100
	// MaxPageSize is the largest page ListJobs returns.
	MaxPageSize = 1000
)

// JobFilter selects and pages jobs; set fields must all match.
type JobFilter struct {
	// States keeps jobs in one of these states; empty for any state.
	States []imagefarmv1.JobState
	// Image keeps jobs for an image: a name matches every version of it, a
	// ref or a manifest digest matches exactly.
	Image string
	// NodeID keeps jobs with a task on this node.
	NodeID string
	// PageSize is the most jobs to return: 0 or less for DefaultPageSize,
	// at most MaxPageSize.
	PageSize int
	// PageToken is the token a previous call returned, to get the next page.
	PageToken string
}

// ListJobs returns one page of the jobs f selects, newest first, without
// their tasks, and the token of the next page ("" on the last one). Pages
// are cut by creation time and id, not by offset, so jobs submitted while a
// client pages do not shift or repeat what it sees. Every job's revision is
// the last event before the listing; task counts are as last stored.
func (s *Store) ListJobs(ctx context.Context, f JobFilter) ([]*imagefarmv1.Job, string, error) {
	after, err := decodePageToken(f.PageToken)
	if err != nil {
		return nil, "", err
	}
	rev, err := s.LastRevision(ctx)
	if err != nil {
		return nil, "", err
	}
	onNode, err := s.jobsOnNode(ctx, f.NodeID)
	if err != nil {
		return nil, "", err
	}
	var jobs []*imagefarmv1.Job
	err = s.jobs.scan(ctx, ">", func(j *imagefarmv1.Job) error {
		if (after == nil || newerFirst(after, j) < 0) && f.matches(j, onNode) {
			j.Revision = rev
			jobs = append(jobs, j)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(jobs, newerFirst)
	size := f.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	if len(jobs) <= size {
		return jobs, "", nil
	}
	jobs = jobs[:size]
	return jobs, encodePageToken(jobs[size-1]), nil
}

// jobsOnNode returns the ids of jobs with a task on nodeID, or nil when
// nodeID is "" (no filter). It reads every task: tasks are keyed by job,
// not node, and a full pass of the bucket is one stream read.
func (s *Store) jobsOnNode(ctx context.Context, nodeID string) (map[string]bool, error) {
	if nodeID == "" {
		return nil, nil
	}
	if _, err := nodeKey(nodeID); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	err := s.tasks.scan(ctx, ">", func(t *imagefarmv1.Task) error {
		if t.GetNodeId() == nodeID {
			ids[t.GetJobId()] = true
		}
		return nil
	})
	return ids, err
}

func (f JobFilter) matches(j *imagefarmv1.Job, onNode map[string]bool) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, j.GetState())) &&
		(onNode == nil || onNode[j.GetId()]) &&
		imageMatches(f.Image, j)
}

// imageMatches reports whether filter, an image name, ref or digest,
// selects job j.
func imageMatches(filter string, j *imagefarmv1.Job) bool {
	if filter == "" || filter == j.GetImageRef() || filter == j.GetManifestDigest() {
		return true
	}
	if strings.ContainsAny(filter, ":@") { // a ref or digest, and not this one
		return false
	}
	ref, err := catalog.ParseRef(j.GetImageRef())
	return err == nil && ref.Name == filter
}

// newerFirst orders jobs newest first, ties broken by id descending.
func newerFirst(a, b *imagefarmv1.Job) int {
	return cmp.Or(b.GetCreateTime().AsTime().Compare(a.GetCreateTime().AsTime()), cmp.Compare(b.GetId(), a.GetId()))
}

// A page token is the creation time and id of the last job of the previous
// page, base64url-encoded: opaque to clients, stateless for the server.
func encodePageToken(last *imagefarmv1.Job) string {
	raw := strconv.FormatInt(last.GetCreateTime().AsTime().UnixNano(), 10) + "/" + last.GetId()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodePageToken returns the cursor job of a token, or nil for "".
func decodePageToken(token string) (*imagefarmv1.Job, error) {
	if token == "" {
		return nil, nil
	}
	bad := fmt.Errorf("page token %s: pass the next_page_token of the previous response: %w", ident.Quote(token), ErrInvalidPageToken)
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, bad
	}
	nanos, id, ok := strings.Cut(string(raw), "/")
	n, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || err != nil || ident.JobID(id) != nil {
		return nil, bad
	}
	return &imagefarmv1.Job{Id: id, CreateTime: timestamppb.New(time.Unix(0, n))}, nil
}
