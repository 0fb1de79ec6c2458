package natsauth

import (
	"fmt"
	"io"
	"strings"

	"github.com/imagefarm/imagefarm/internal/wire"
)

// ControllerUser is the controller's NATS user name.
const ControllerUser = "imagefarm-controller"

// ImagerUser is the NATS user name of an imager node.
func ImagerUser(nodeID string) string { return "imager-" + nodeID }

// InboxPrefix is where an imager node receives its replies. Each node has
// its own, so that no node may subscribe to the replies of another (which
// carry that node's assignments) or of the controller.
func InboxPrefix(nodeID string) string { return "_INBOX_" + nodeID }

// Permissions lists the subjects a user may publish and subscribe to;
// everything else is denied.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// ControllerPermissions are the controller's: the farm's own subjects
// (assignments, events, audit), the JetStream API for its streams,
// consumers and KV buckets, and the replies it gets.
func ControllerPermissions() Permissions {
	return Permissions{
		Publish: []string{"imagefarm.>", "$JS.API.>", "$KV.>", "$JS.ACK.>", "$JS.FC.>"},
		// KV watchers and the events and audit readers are ordered
		// consumers delivering to inboxes.
		Subscribe: []string{"_INBOX.>", "imagefarm.>", "$KV.>"},
	}
}

// ImagerPermissions are those of the imager node nodeID, which must pass
// ident.NodeID: only what reading its own consumer takes.
func ImagerPermissions(nodeID string) Permissions {
	stream, cons := wire.StreamName, wire.ConsumerName(nodeID)
	return Permissions{
		Publish: []string{
			// The server refuses a create whose consumer name or filter
			// differs from the ones in this subject.
			"$JS.API.CONSUMER.CREATE." + stream + "." + cons + "." + wire.Subject(nodeID),
			"$JS.API.CONSUMER.INFO." + stream + "." + cons,
			"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + cons,
			"$JS.ACK." + stream + "." + cons + ".>",
		},
		Subscribe: []string{InboxPrefix(nodeID) + ".>"},
	}
}

// User is one NATS user of the farm.
type User struct {
	Name string
	// Password is the secret in the user's credentials file; the server
	// configuration holds only its bcrypt hash (PasswordHash).
	Password     string
	PasswordHash string
	Permissions  Permissions
}

// WriteServerConfig writes an authorization block granting users, for a
// nats-server configuration to include.
func WriteServerConfig(w io.Writer, users []User) error {
	var b strings.Builder
	b.WriteString("# imagefarm's NATS users, written by imagefarm nats-config: include it from nats-server.conf.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: %q\n      permissions: {\n", u.Name, u.PasswordHash)
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(u.Permissions.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(u.Permissions.Subscribe))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func quoteList(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
