package state

import (
	"cmp"
	"context"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Nodes and drives have no events: they are the farm's current inventory,
// which the imagers re-announce on every hello, not history anyone resumes.

func newNodeKind(kv jetstream.KeyValue, s *Store) *kind[*imagefarmv1.Node] {
	return &kind[*imagefarmv1.Node]{
		kv: kv, s: s,
		fresh: func() *imagefarmv1.Node { return &imagefarmv1.Node{} },
		key:   func(n *imagefarmv1.Node) (string, error) { return nodeKey(n.GetId()) },
	}
}

func newDriveKind(kv jetstream.KeyValue, s *Store) *kind[*imagefarmv1.Drive] {
	return &kind[*imagefarmv1.Drive]{
		kv: kv, s: s,
		fresh: func() *imagefarmv1.Drive { return &imagefarmv1.Drive{} },
		key:   func(d *imagefarmv1.Drive) (string, error) { return driveKey(d.GetNodeId(), d.GetId()) },
	}
}

// UpdateNode lets fn change the node, or a new Node with only its id set
// when there is none yet (a node announces itself), and stores the result
// unless fn changed nothing. When another writer changed the node meanwhile,
// fn runs again on the fresh node, so an epoch raised in fn is raised
// exactly once. fn must not change the id, nor write this same node.
func (s *Store) UpdateNode(ctx context.Context, nodeID string, fn func(*imagefarmv1.Node) error) (*imagefarmv1.Node, error) {
	key, err := nodeKey(nodeID)
	if err != nil {
		return nil, err
	}
	seed := func(n *imagefarmv1.Node) error {
		n.Id = nodeID
		return nil
	}
	return s.nodes.write(ctx, key, upsert, seed, fn)
}

// GetNode returns one node.
func (s *Store) GetNode(ctx context.Context, nodeID string) (*imagefarmv1.Node, error) {
	key, err := nodeKey(nodeID)
	if err != nil {
		return nil, err
	}
	n, _, err := s.nodes.get(ctx, key)
	return n, err
}

// NodeFilter selects nodes; set fields must all match.
type NodeFilter struct {
	Pool   string                  // "" for any pool
	States []imagefarmv1.NodeState // empty for any state
}

// ListNodes returns the nodes f selects, by id.
func (s *Store) ListNodes(ctx context.Context, f NodeFilter) ([]*imagefarmv1.Node, error) {
	var out []*imagefarmv1.Node
	err := s.nodes.scan(ctx, ">", func(n *imagefarmv1.Node) error {
		if (f.Pool == "" || n.GetPool() == f.Pool) && (len(f.States) == 0 || slices.Contains(f.States, n.GetState())) {
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *imagefarmv1.Node) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return out, nil
}

// UpdateDrive lets fn change the drive, or a new Drive with only its ids set
// when there is none yet, and stores the result unless fn changed nothing;
// see UpdateNode.
func (s *Store) UpdateDrive(ctx context.Context, nodeID, driveID string, fn func(*imagefarmv1.Drive) error) (*imagefarmv1.Drive, error) {
	key, err := driveKey(nodeID, driveID)
	if err != nil {
		return nil, err
	}
	seed := func(d *imagefarmv1.Drive) error {
		d.NodeId, d.Id = nodeID, driveID
		return nil
	}
	return s.drives.write(ctx, key, upsert, seed, fn)
}

// UpdateDriveIfStored lets fn change the drive as UpdateDrive does, but
// fails with ErrNotFound, storing nothing, when the drive is not stored:
// what changes a drive's claim must not bring back a drive that was pulled.
func (s *Store) UpdateDriveIfStored(ctx context.Context, nodeID, driveID string, fn func(*imagefarmv1.Drive) error) (*imagefarmv1.Drive, error) {
	key, err := driveKey(nodeID, driveID)
	if err != nil {
		return nil, err
	}
	return s.drives.write(ctx, key, mustExist, noSeed, fn)
}

// GetDrive returns one drive.
func (s *Store) GetDrive(ctx context.Context, nodeID, driveID string) (*imagefarmv1.Drive, error) {
	key, err := driveKey(nodeID, driveID)
	if err != nil {
		return nil, err
	}
	d, _, err := s.drives.get(ctx, key)
	return d, err
}

// DeleteDrive forgets a drive; forgetting one that is not stored is not an
// error.
func (s *Store) DeleteDrive(ctx context.Context, nodeID, driveID string) error {
	key, err := driveKey(nodeID, driveID)
	if err != nil {
		return err
	}
	return s.drives.delete(ctx, key)
}

// ListDrives returns the drives of one node, or of every node when nodeID
// is "", by node id, then slot, then drive id.
func (s *Store) ListDrives(ctx context.Context, nodeID string) ([]*imagefarmv1.Drive, error) {
	filter := ">"
	if nodeID != "" {
		key, err := nodeKey(nodeID)
		if err != nil {
			return nil, err
		}
		filter = key + ".*"
	}
	drives, err := s.drives.list(ctx, filter)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(drives, func(a, b *imagefarmv1.Drive) int {
		return cmp.Or(cmp.Compare(a.GetNodeId(), b.GetNodeId()), cmp.Compare(a.GetSlot(), b.GetSlot()),
			cmp.Compare(a.GetId(), b.GetId()))
	})
	return drives, nil
}
