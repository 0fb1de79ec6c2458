package netboot

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/userpath"
)

// handler serves what goes over HTTP: each machine's iPXE scripts, the
// deploy environment, and iPXE for UEFI HTTP boot clients.
func (s *Service) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.serveIdentify)
	mux.HandleFunc("GET /plan.ipxe", s.servePlan)
	mux.HandleFunc("GET /files/{name}", s.serveDeployFile)
	mux.HandleFunc("GET /files/{env}/{name}", s.serveDeployFile)
	mux.HandleFunc("GET /ipxe/{name}", s.serveIPXE)
	mux.HandleFunc("GET /winpe/{id}/{name}", s.serveWinPE)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, http.StatusNotFound, "not a boot file: this server serves /boot.ipxe, /plan.ipxe, /files/[ENV/]vmlinuz, /files/[ENV/]initramfs and /ipxe/"+s.cfg.Files.UEFIBinary)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Debug("http request", "method", r.Method, "uri", ident.Quote(r.URL.RequestURI()), "client", r.RemoteAddr)
		mux.ServeHTTP(w, r)
	})
}

// serveIdentify serves the first script iPXE runs, which asks for the plan
// with the machine's SMBIOS fields.
func (s *Service) serveIdentify(w http.ResponseWriter, r *http.Request) {
	c, err := s.queryClient(r, false)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	b, err := render(identifyScript, scriptData{Base: s.base, MAC: hyphenMAC(c.MAC), Arch: c.Arch.String(), EFI: c.Arch.EFI()})
	s.sendScript(w, r, c, b, err)
}

// servePlan serves a machine's script for this boot.
func (s *Service) servePlan(w http.ResponseWriter, r *http.Request) {
	c, err := s.queryClient(r, true)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	b, err := s.script(r.Context(), c)
	s.sendScript(w, r, c, b, err)
}

func (s *Service) sendScript(w http.ResponseWriter, r *http.Request, c Client, b []byte, err error) {
	if err != nil {
		s.log.Error("http script", "path", ident.Quote(r.URL.RequestURI()), "err", err)
		http.Error(w, "the script could not be written; see the boot service's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
	s.log.Info("http sent script", "path", r.URL.Path, "client", r.RemoteAddr, "mac", c.MAC.String())
}

// serveDeployFile serves the deploy environment's kernel or initramfs:
// of the version /files/ENV/ names (which scripts give), or of the
// current one (/files/NAME).
func (s *Service) serveDeployFile(w http.ResponseWriter, r *http.Request) {
	env, ok := s.envs.current()
	if id := r.PathValue("env"); id != "" {
		if env, ok = s.envs.byID(id); !ok {
			s.refuse(w, r, http.StatusNotFound, "no deploy environment "+ident.Quote(id)+" is served any more: netboot again for the current one")
			return
		}
	}
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "this boot service has no deploy environment (kernel and initramfs)")
		return
	}
	p, ok := env.fileFor(r.PathValue("name"))
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "not a boot file: the deploy environment is /files/[ENV/]vmlinuz and /files/[ENV/]initramfs")
		return
	}
	s.sendFile(w, r, p)
}

// serveWinPE serves wimboot and the WinPE files it is handed.
func (s *Service) serveWinPE(w http.ResponseWriter, r *http.Request) {
	wp := s.cfg.WinPE
	if wp == nil {
		s.refuse(w, r, http.StatusNotFound, "this boot service has no WinPE: start netboot serve with --wimboot FILE and --winpe NAME:VERSION")
		return
	}
	if r.PathValue("id") != wp.ID {
		s.refuse(w, r, http.StatusNotFound, "no WinPE "+ident.Quote(r.PathValue("id"))+" is served: netboot again for the current one")
		return
	}
	p, ok := wp.file(r.PathValue("name"))
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "not a boot file: WinPE's are /winpe/ID/wimboot and "+strings.Join(wp.names(), ", "))
		return
	}
	s.sendFile(w, r, p)
}

// serveIPXE serves the UEFI iPXE binary to UEFI HTTP boot clients.
func (s *Service) serveIPXE(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.cfg.Files.UEFIBinary {
		s.refuse(w, r, http.StatusNotFound, "not a boot file: the iPXE served over HTTP is /ipxe/"+s.cfg.Files.UEFIBinary)
		return
	}
	s.sendFile(w, r, filepath.Join(s.cfg.Files.IPXEDir, s.cfg.Files.UEFIBinary))
}

func (s *Service) sendFile(w http.ResponseWriter, r *http.Request, path string) {
	f, err := userpath.Open(path)
	if err != nil {
		s.log.Error("http open", "path", r.URL.Path, "err", err)
		http.Error(w, "the boot file cannot be read; see the boot service's log", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, filepath.Base(r.URL.Path), time.Time{}, f)
	s.log.Info("http sent", "path", r.URL.Path, "client", r.RemoteAddr, "bytes", cw.n, "duration", time.Since(start).Round(time.Millisecond))
}

func (s *Service) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.log.Warn("http refused", "method", r.Method, "path", ident.Quote(r.URL.RequestURI()), "client", r.RemoteAddr, "why", why)
	http.Error(w, why, code)
}

// queryClient reads the client from a script URL's query: mac and arch,
// and with smbios the SMBIOS fields iPXE filled in.
func (s *Service) queryClient(r *http.Request, smbios bool) (Client, error) {
	q := r.URL.Query()
	mac, err := ParseMAC(q.Get("mac"))
	if err != nil {
		return Client{}, fmt.Errorf("mac: %w", err)
	}
	arch, err := ParseArch(q.Get("arch"))
	if err != nil {
		return Client{}, err
	}
	c := Client{MAC: mac, Arch: arch, Chain: ChainIPXE}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Addr = ap.Addr().Unmap()
	}
	if smbios {
		c.UUID = s.smbiosField(q, "uuid", mac)
		c.Serial = s.smbiosField(q, "serial", mac)
		c.Manufacturer = s.smbiosField(q, "manufacturer", mac)
		c.Product = s.smbiosField(q, "product", mac)
	}
	return c, nil
}

// maxSMBIOSField is the longest SMBIOS field kept, in bytes: an SMBIOS
// string is at most 255 bytes, a UUID 36.
const maxSMBIOSField = 255

// smbiosField is the SMBIOS field name from q, trimmed. A value that is
// not printable text or is too long is logged and left out: a laptop with
// a strange serial still boots, and nothing unprintable reaches the
// planner or the log.
func (s *Service) smbiosField(q url.Values, name string, mac []byte) string {
	v := strings.TrimSpace(q.Get(name))
	bad := ""
	switch {
	case len(v) > maxSMBIOSField:
		bad = fmt.Sprintf("is %d bytes long, the limit is %d", len(v), maxSMBIOSField)
	case !utf8.ValidString(v):
		bad = "is not UTF-8"
	case strings.IndexFunc(v, func(c rune) bool { return c != ' ' && !unicode.IsPrint(c) }) >= 0:
		bad = "has unprintable characters"
	}
	if bad != "" {
		s.log.Warn("SMBIOS field left out", "mac", hyphenMAC(mac), "field", name, "value", ident.Quote(v), "why", bad)
		return ""
	}
	return v
}

// countingWriter counts the bytes of a response body.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}
