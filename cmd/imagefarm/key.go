package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// The files imagefarm key init writes.
const (
	signKeyFile = "signing.key"
	signPubFile = "signing.pub"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "The farm's image signing key: imagers write only images signed by a key they trust",
		Long: `Images are signed with the farm's ed25519 key when they are pushed
(image push --sign-key, or IMAGEFARM_SIGN_KEY), or afterwards (image sign).
Imagers verify the signature against their trusted public keys (imager
--trusted-keys FILE, or IMAGEFARM_TRUSTED_KEYS) before they fetch a byte of
the image, and refuse an unsigned image, a bad signature or an image older
than one they have already written under the same name.

    imagefarm key init --out /etc/imagefarm/signing
    imagefarm image push win11:2026.11 win11.wim --kind wim --sign-key /etc/imagefarm/signing/signing.key
    imagefarm imager ... --trusted-keys /etc/imagefarm/trusted-keys.pub

A trusted keys file holds one key a line ("imagefarm-ed25519 <base64> <name>",
as in signing.pub); list several to rotate keys.`,
	}
	cmd.AddCommand(newKeyInitCmd())
	return cmd
}

// keyJSON is the key pair key init made, as --json prints it.
type keyJSON struct {
	KeyID     string `json:"key_id"`
	Key       string `json:"key"`
	PublicKey string `json:"public_key"`
}

func newKeyInitCmd() *cobra.Command {
	var (
		out, name string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "init --out DIR [--name NAME]",
		Short: "Make a signing key in DIR: signing.key (mode 0600) and signing.pub (never overwritten)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := initSigningKey(out, name)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), keyJSON{KeyID: pub.ID, Key: filepath.Join(out, signKeyFile), PublicKey: filepath.Join(out, signPubFile)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s:\n  %s  mode 0600: signs images; keep it where images are pushed from\n  %s  give it to every imager (--trusted-keys)\n",
				pub.ID, filepath.Join(out, signKeyFile), filepath.Join(out, signPubFile))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "folder to write the key files to")
	cmd.Flags().StringVar(&name, "name", "imagefarm", "name recorded with the public key, for people")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the key's id and files as JSON")
	cmd.MarkFlagRequired("out")
	return cmd
}

// initSigningKey writes a new key pair in dir, refusing to replace one.
func initSigningKey(dir, name string) (catalog.PublicKey, error) {
	var none catalog.PublicKey
	if err := userpath.CheckFolder(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return none, fmt.Errorf("key init: %w", err)
	}
	for _, f := range []string{signKeyFile, signPubFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, fs.ErrNotExist) {
			return none, fmt.Errorf("key init: %s already exists; images signed with it would no longer verify if it changed", filepath.Join(dir, f))
		}
	}
	k, err := catalog.GenerateKey()
	if err != nil {
		return none, err
	}
	priv, err := k.MarshalPEM()
	if err != nil {
		return none, err
	}
	pub := k.Public(name)
	if err := userpath.MakeFolder(dir, 0o755); err != nil {
		return none, fmt.Errorf("key init: %w", err)
	}
	if err := userpath.WriteFile(filepath.Join(dir, signKeyFile), priv, userpath.Options{Perm: 0o600}); err != nil {
		return none, fmt.Errorf("key init: %w", err)
	}
	if err := userpath.WriteFile(filepath.Join(dir, signPubFile), []byte(pub.String()+"\n"), userpath.Options{Perm: 0o644}); err != nil {
		return none, fmt.Errorf("key init: %w", err)
	}
	return pub, nil
}

// signKeyUsage is the help of --sign-key.
const signKeyUsage = "signing key file (imagefarm key init) to sign the image with (env IMAGEFARM_SIGN_KEY)"

// loadSignKey loads the key at path, or returns nil for an empty path.
func loadSignKey(path string) (*catalog.SigningKey, error) {
	if path == "" {
		return nil, nil
	}
	return catalog.LoadSigningKey(path)
}

func newImageSignCmd(g *globals) *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "sign REF --sign-key FILE",
		Short: "Sign an image already in the catalog (NAME:VERSION, NAME:CHANNEL or NAME@DIGEST); the key never leaves this machine",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := catalog.ParseRef(args[0])
			if err != nil {
				return err
			}
			if keyPath == "" {
				return errors.New("no signing key: pass --sign-key FILE or set IMAGEFARM_SIGN_KEY")
			}
			key, err := catalog.LoadSigningKey(keyPath)
			if err != nil {
				return err
			}
			c, err := openCatalog(g, catalog.Options{}) // the manifest, to sign its statement
			if err != nil {
				return err
			}
			m, digest, err := c.Manifest(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if m.Name != ref.Name {
				return fmt.Errorf("%s points at %s, which is the image %s:%s; sign it by its own name", ref, digest, m.Name, m.Version)
			}
			refs, done, err := openRefChanger(g, cmd.ErrOrStderr(), c)
			if err != nil {
				return err
			}
			defer done()
			if err := refs.AddSignature(cmd.Context(), digest, key.Public(""), key.SignImage(m, digest)); err != nil {
				return err
			}
			res := newChangeJSON(m.Name+":"+m.Version, digest, lastRecord(refs))
			res.KeyID = key.ID
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s %s with key %s%s\n", res.Ref, digest, key.ID, auditNote(lastRecord(refs)))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "sign-key", os.Getenv("IMAGEFARM_SIGN_KEY"), signKeyUsage)
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

// trustFlags are the flags, shared by write and imager, that say how far a
// command that writes drives trusts what the store serves: which image
// signatures it accepts, and whether it may write chunks before every
// chunk of the image has been fetched and checked.
type trustFlags struct {
	trustedKeys        string
	allowUnsigned      bool // registered by imager only
	writeWhileFetching bool
}

func (t *trustFlags) add(cmd *cobra.Command) {
	t.addTrustedKeys(cmd)
	cmd.Flags().BoolVar(&t.writeWhileFetching, "write-while-fetching", false,
		"start writing before the whole image is in the node cache and checked (faster on a cold cache, but a chunk the store serves damaged is found only after the chunks before it were written)")
}

// addTrustedKeys registers --trusted-keys alone, for commands that check
// signatures but write no drive.
func (t *trustFlags) addTrustedKeys(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.trustedKeys, "trusted-keys", os.Getenv("IMAGEFARM_TRUSTED_KEYS"),
		"file of public keys (imagefarm-ed25519 lines, as in signing.pub) images must be signed by (env IMAGEFARM_TRUSTED_KEYS)")
}

// keyRing loads the trusted keys, or returns nil when none are given.
func (t *trustFlags) keyRing() (*catalog.KeyRing, error) {
	if t.trustedKeys == "" {
		return nil, nil
	}
	return catalog.LoadKeyRing(t.trustedKeys)
}
