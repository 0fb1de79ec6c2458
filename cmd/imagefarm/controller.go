package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/enroll"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/internal/wire"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// controllerRetryBudget bounds how long the controller retries storage for
// a request (resolving a ref, reading a manifest): a client is better told
// at once that storage is away than kept waiting as an imager would.
const controllerRetryBudget = 10 * time.Second

func newControllerCmd(g *globals) *cobra.Command {
	var (
		natsURL, natsCreds string
		listen, clientCA   string
		metricsListen      string
		bootstrap          string
		ttl, ackWait       time.Duration
		scanEvery          time.Duration
		trustedKeys        string
		signKey            string
		devices            controller.DevicesConfig
	)
	cmd := &cobra.Command{
		Use: "controller --nats URL --store URL --listen ADDR --tls-cert FILE --tls-key FILE --client-ca FILE",
		Long: `Run the controller. It alone writes the catalog's refs and signatures
(image push, tag, rm and sign ask it, and it records each change in the
audit trail), and it stores the captures of netbooted devices (job
capture), signed with --sign-key when given; so its store credentials
(--store; S3 keys from the environment or the URL's credentials file)
must write refs/ and signatures/, and put chunks/ and manifests/:
deploy/minio/controller-policy.json.`,
		Short: "Run the controller: the client API, scheduling, dispatch over NATS JetStream",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if natsURL == "" {
				return errors.New("--nats: name the NATS server with JetStream, e.g. nats://127.0.0.1:4222")
			}
			if bootstrap != "" {
				if err := userpath.CheckOutput(bootstrap, true); err != nil {
					return fmt.Errorf("--bootstrap-token-file: %w", err)
				}
			}
			tlsCfg, clientCAs, err := g.tls.serverTLS(clientCA)
			if err != nil {
				return err
			}
			cat, err := openCatalog(g, catalog.Options{RetryBudget: controllerRetryBudget})
			if err != nil {
				return err
			}
			var ring *catalog.KeyRing
			if trustedKeys != "" {
				if ring, err = catalog.LoadKeyRing(trustedKeys); err != nil {
					return err
				}
			}
			key, err := loadSignKey(signKey)
			if err != nil {
				return fmt.Errorf("--sign-key: %w", err)
			}
			reg, err := serveMetrics(metricsListen)
			if err != nil {
				return err
			}
			c, err := controller.New(controller.Config{Metrics: reg, NATSURL: natsURL, NATSCreds: natsCreds, Listen: listen, Catalog: cat,
				TLS: tlsCfg, ClientCAs: clientCAs, Insecure: g.tls.insecure, BootstrapTokenFile: bootstrap, SignKey: key,
				HeartbeatTTL: ttl, CatalogScanInterval: scanEvery, TrustedKeys: ring, Dispatch: wire.Config{AckWait: ackWait}, Devices: devices, Log: slog.Default()})
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&natsURL, "nats", "", "NATS server URL (JetStream enabled)")
	addNATSCredsFlag(cmd, &natsCreds, "controller.nats-creds")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7700", "gRPC listen address")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics, without TLS or tokens: keep it on a trusted network (off when empty)")
	cmd.Flags().StringVar(&clientCA, "client-ca", os.Getenv("IMAGEFARM_CLIENT_CA"),
		"the farm CA certificate (ca.crt) that imagers' and clients' certificates are verified against (env IMAGEFARM_CLIENT_CA)")
	cmd.Flags().StringVar(&bootstrap, "bootstrap-token-file", "",
		"when the farm has no admin API token (its first start, or after the last was revoked with --force), create an admin token named bootstrap and write it to this file (mode 0600)")
	durationVar(cmd.Flags(), &ttl, "heartbeat-ttl", scheduler.DefaultHeartbeatTTL, 1, "a node silent for this long is lost and its tasks fenced")
	durationVar(cmd.Flags(), &scanEvery, "catalog-scan-interval", controller.DefaultCatalogScanInterval, 0,
		"compare the catalog's refs with the audit trail this often, and record a change nobody reported as image.unrecorded at the next scan (0: never)")
	cmd.Flags().StringVar(&trustedKeys, "trusted-keys", os.Getenv("IMAGEFARM_TRUSTED_KEYS"),
		"file of public keys (as in signing.pub) that image sign may sign with; any key whose signature verifies when unset (env IMAGEFARM_TRUSTED_KEYS)")
	cmd.Flags().StringVar(&signKey, "sign-key", os.Getenv("IMAGEFARM_SIGN_KEY"),
		"private key (as imagefarm key init writes) that signs the devices' captures (job capture); unsigned without it (env IMAGEFARM_SIGN_KEY)")
	addAckWaitFlag(cmd, &ackWait)
	durationVar(cmd.Flags(), &devices.BootTokenTTL, "boot-token-ttl", enroll.DefaultTokenTTL, time.Second,
		"a netbooting machine's one-time boot token is accepted this long after the boot service got it")
	durationVar(cmd.Flags(), &devices.CredentialTTL, "device-credential-ttl", enroll.DefaultCredentialTTL, time.Minute,
		"an enrolled device's credential (its task's reports and image reads) is accepted this long")
	return cmd
}

// addAckWaitFlag adds --ack-wait, which the controller and every imager
// must set alike: either side may create a node's consumer.
func addAckWaitFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "ack-wait", 0, "how long an assignment may go unacknowledged before NATS delivers it again (default 30s; set the same on the controller and every imager)")
}

// addNATSCredsFlag adds --nats-creds, the file a component logs in to NATS
// with (imagefarm nats-config writes them; example names the controller's
// or a node's).
func addNATSCredsFlag(cmd *cobra.Command, file *string, example string) {
	cmd.Flags().StringVar(file, "nats-creds", os.Getenv("IMAGEFARM_NATS_CREDS"),
		"NATS credentials file: USER:PASSWORD as imagefarm nats-config writes it ("+example+"), or a NATS .creds file (env IMAGEFARM_NATS_CREDS)")
}
