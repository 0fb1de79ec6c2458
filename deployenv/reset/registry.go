package reset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// joins is what the offline SYSTEM hive says about the device's joins.
type joins struct {
	domain string // Active Directory domain (Tcpip\Parameters Domain)
	aad    int    // Azure AD join entries (CloudDomainJoin\JoinInfo)
}

func (j joins) hybrid() bool { return j.domain != "" && j.aad > 0 }

func (j joins) String() string {
	return fmt.Sprintf("SYSTEM hive: domain %q, %d Azure AD join entries", j.domain, j.aad)
}

// readJoins reads the domain and Azure AD join of the Windows installation
// on dev from its SYSTEM hive (ntfscat, then hivexget and hivexsh), under
// the control set Select\Current names. Hivex reads the hive file as
// written; changes only in its transaction logs are not seen.
func readJoins(ctx context.Context, dev, hivePath, scratch string) (joins, error) {
	b, err := ntfsRead(ctx, dev, hivePath, -1)
	if err != nil {
		return joins{}, fmt.Errorf("read %s: %w", hivePath, err)
	}
	hive := filepath.Join(scratch, "SYSTEM")
	if err := os.WriteFile(hive, b, 0o600); err != nil {
		return joins{}, err
	}
	defer os.Remove(hive)
	set := 1
	if v, err := hiveValue(ctx, hive, `\Select`, "Current"); err != nil {
		return joins{}, err
	} else if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 1000 {
		set = n
	}
	cs := fmt.Sprintf(`\ControlSet%03d`, set)
	var j joins
	if j.domain, err = hiveValue(ctx, hive, cs+`\Services\Tcpip\Parameters`, "Domain"); err != nil {
		return joins{}, err
	}
	keys, err := hiveSubkeys(ctx, hive, cs+`\Control\CloudDomainJoin\JoinInfo`)
	j.aad = len(keys)
	return j, err
}

// errHiveMissing is a key or value the hive does not have.
var errHiveMissing = errors.New("not in the hive")

// hiveValue reads a value with hivexget; "" when the key or value is not
// there.
func hiveValue(ctx context.Context, hive, key, value string) (string, error) {
	out, err := tool(ctx, nil, "hivexget", hive, key, value)
	if err := hiveErr(err); errors.Is(err, errHiveMissing) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// hiveSubkeys lists a key's subkeys with hivexsh; none when the key is not
// there.
func hiveSubkeys(ctx context.Context, hive, key string) ([]string, error) {
	script := "cd " + key + "\nls\n"
	out, err := tool(ctx, strings.NewReader(script), "hivexsh", hive)
	if err := hiveErr(err); errors.Is(err, errHiveMissing) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range strings.Split(string(out), "\n") {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// hiveErr tells a missing key or value (hivex says "not found") from a
// hive it cannot read.
func hiveErr(err error) error {
	var te *toolError
	if errors.As(err, &te) && strings.Contains(te.stderr, "not found") {
		return errHiveMissing
	}
	return err
}
