package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/imagefarm/imagefarm/internal/natsauth"
)

// startNATS starts the dev farm's embedded NATS server with the users a
// deployment has (natsauth.Generate, as imagefarm nats-config writes them):
// the controller's and the dev node's, each with its own password and
// permissions, their credentials files in credsDir. Nobody else may log in,
// so the dev farm runs under the permissions a real one does. Its store is
// in the data folder, which runDev holds locked (dirlock).
func startNATS(f *devFlags, credsDir string) (*server.Server, error) {
	if err := os.MkdirAll(credsDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded NATS users: %w", err)
	}
	if err := natsauth.Generate(credsDir, []string{devNode}); err != nil {
		return nil, fmt.Errorf("embedded NATS users: %w", err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(credsDir, natsauth.ServerConfigFile))
	if err != nil {
		return nil, fmt.Errorf("embedded NATS users: %w", err)
	}
	opts.Host, opts.Port, opts.JetStream = f.natsHost, f.natsPort, true
	opts.StoreDir, opts.NoLog, opts.NoSigs = filepath.Join(f.dataDir, "nats"), true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("embedded NATS on %s:%d did not start within 10s", f.natsHost, f.natsPort)
	}
	return ns, nil
}
