package redact

import "strings"

// Hidden stands where a secret was.
const Hidden = "xxxxx"

// URL is s, a URL or a comma-separated list of them (a NATS cluster's
// servers), with the user info of each replaced by Hidden: a user name may
// be a token, so all of it goes. It works on the text, so a URL that does
// not parse is redacted too, and a string that is no URL comes back as it
// is.
func URL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = one(p)
	}
	return strings.Join(parts, ",")
}

func one(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	return prefix + Hidden + rest[at:]
}

// Error is err with each URL of urls (as URL takes them) redacted in its
// message, for an error from a library that quotes the URL it was given
// (a URL that does not parse). It still wraps err for errors.Is and As.
func Error(err error, urls string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, u := range strings.Split(urls, ",") {
		if r := one(u); r != u {
			msg = strings.ReplaceAll(msg, u, r)
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
