package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// rpcTimeout bounds every call to the controller except WatchJob, which
// lasts as long as the job. SubmitJob resolves the image ref in the store,
// so it gets some room.
const rpcTimeout = 30 * time.Second

// retryPolicy has gRPC retry, with backoff, calls that fail UNAVAILABLE:
// the controller is not reachable yet, or restarting. Every method may be
// retried: reads and cancels are idempotent, and SubmitJob carries a
// request_id that makes a retry return the job the first attempt created.
const retryPolicy = `{"methodConfig": [{
	"name": [{"service": "imagefarm.v1.ImageFarmService"}],
	"retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "2s",
		"backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
}]}`

// controllerClient is a connection to the controller's client API. Its
// errors are the controller's messages as they are, which are written for
// people, and name the controller when it cannot be reached.
type controllerClient struct {
	imagefarmv1.ImageFarmServiceClient
	addr string
	conn *grpc.ClientConn
}

// dialController connects to the controller g names, over TLS verified
// against the farm CA (--ca), or in plaintext with --insecure, which it
// warns of, and sends the token (--token) with every call. The connection
// is made on the first call, so an unreachable controller shows up as that
// call's error.
func dialController(g *globals) (*controllerClient, error) {
	if g.controller == "" {
		return nil, errors.New("no controller: pass --controller HOST:PORT or set IMAGEFARM_CONTROLLER")
	}
	tlsCfg, err := g.tls.clientTLS()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	} else {
		fmt.Fprintln(os.Stderr, cliInsecureWarning)
	}
	opts, err := tokenOption(g, tlsCfg == nil)
	if err != nil {
		return nil, err
	}
	c := &controllerClient{addr: g.controller}
	conn, err := grpc.NewClient(g.controller, append(opts,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(retryPolicy),
		grpc.WithChainUnaryInterceptor(c.unary))...)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", g.controller, err)
	}
	c.conn, c.ImageFarmServiceClient = conn, imagefarmv1.NewImageFarmServiceClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *controllerClient) Close() error { return c.conn.Close() }

// unary gives every unary call its timeout and its error the form the CLI
// prints.
func (c *controllerClient) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	return c.wrap(invoker(ctx, method, req, reply, cc, opts...))
}

// wrap turns a gRPC status into a controllerError; other errors pass as
// they are. It takes the innermost status: gRPC's retry wraps the last
// attempt's status in words about the attempts, which would bury the
// controller's message.
func (c *controllerClient) wrap(err error) error {
	var ce *controllerError
	if err == nil || errors.As(err, &ce) {
		return err
	}
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) || gs.GRPCStatus() == nil {
		return err
	}
	return &controllerError{addr: c.addr, st: gs.GRPCStatus()}
}

// controllerError is a failed call to the controller. It keeps the status,
// so status.Code still sees the code.
type controllerError struct {
	addr string
	st   *status.Status
}

func (e *controllerError) Error() string {
	switch e.st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("controller %s unavailable: %s", e.addr, e.st.Message())
	case codes.DeadlineExceeded:
		return fmt.Sprintf("controller %s did not answer in time: %s", e.addr, e.st.Message())
	}
	return e.st.Message()
}

// GRPCStatus returns the status of the call.
func (e *controllerError) GRPCStatus() *status.Status { return e.st }

// protoJSON is the --json form of the controller's messages: protojson with
// the proto's snake_case field names, like the CLI's other JSON.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// printProto writes one message as indented JSON.
func printProto(w io.Writer, m proto.Message) error {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

// printProtos writes messages as one indented JSON array.
func printProtos[M proto.Message](w io.Writer, ms []M) error {
	parts := make([][]byte, len(ms))
	for i, m := range ms {
		b, err := protoJSON.Marshal(m)
		if err != nil {
			return err
		}
		parts[i] = b
	}
	return writeIndented(w, append(append([]byte("["), bytes.Join(parts, []byte(","))...), ']'))
}

// printProtoLine writes a message as one line of JSON, for streams.
func printProtoLine(w io.Writer, m proto.Message) error {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		return err
	}
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		return err
	}
	line.WriteByte('\n')
	_, err = w.Write(line.Bytes())
	return err
}

func writeIndented(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// enumName is an enum value's name without the prefix its type shares
// ("JOB_STATE_RUNNING" is "RUNNING").
func enumName(e protoreflect.Enum) string {
	v := e.Descriptor().Values().ByNumber(e.Number())
	if v == nil {
		return fmt.Sprint(e.Number())
	}
	return strings.TrimPrefix(string(v.Name()), enumPrefix(e.Descriptor()))
}

// parseEnum reads a value of d from a flag: "running", "RUNNING" or
// "JOB_STATE_RUNNING".
func parseEnum(flag string, d protoreflect.EnumDescriptor, s string) (protoreflect.EnumNumber, error) {
	prefix := enumPrefix(d)
	name := strings.TrimPrefix(strings.ToUpper(s), prefix)
	if v := d.Values().ByName(protoreflect.Name(prefix + name)); v != nil && v.Number() != 0 {
		return v.Number(), nil
	}
	var names []string
	for i := 1; i < d.Values().Len(); i++ {
		names = append(names, strings.ToLower(strings.TrimPrefix(string(d.Values().Get(i).Name()), prefix)))
	}
	return 0, fmt.Errorf("--%s %q: want one of %s", flag, s, strings.Join(names, ", "))
}

// enumPrefix is the prefix every value of d starts with, taken from its
// zero value ("JOB_STATE_UNSPECIFIED").
func enumPrefix(d protoreflect.EnumDescriptor) string {
	return strings.TrimSuffix(string(d.Values().ByNumber(0).Name()), "UNSPECIFIED")
}

// parseEnums reads a repeated enum flag.
func parseEnums[E ~int32](flag string, d protoreflect.EnumDescriptor, ss []string) ([]E, error) {
	out := make([]E, 0, len(ss))
	for _, s := range ss {
		n, err := parseEnum(flag, d, s)
		if err != nil {
			return nil, err
		}
		out = append(out, E(n))
	}
	return out, nil
}

// timeAgo says how long ago ts was, or "-" when it is unset.
func timeAgo(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return humanize.Time(ts.AsTime())
}

// localTime is ts in the local zone to the minute, or "-" when it is unset.
func localTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04")
}
