package wim

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// xmlWIM is the WIM element of the XML resource, as far as Read uses it.
type xmlWIM struct {
	TotalBytes int64
	Images     []xmlImage
}

// xmlImage is one IMAGE element.
type xmlImage struct {
	Index        string      `xml:"INDEX,attr"`
	Name         string      `xml:"NAME"`
	Description  string      `xml:"DESCRIPTION"`
	DisplayName  string      `xml:"DISPLAYNAME"`
	Flags        string      `xml:"FLAGS"`
	DirCount     int64       `xml:"DIRCOUNT"`
	FileCount    int64       `xml:"FILECOUNT"`
	TotalBytes   int64       `xml:"TOTALBYTES"`
	CreationTime xmlFiletime `xml:"CREATIONTIME"`
	Windows      xmlWindows  `xml:"WINDOWS"`
}

// xmlWindows is the WINDOWS element that DISM writes for a Windows image.
type xmlWindows struct {
	Arch             string      `xml:"ARCH"`
	ProductName      string      `xml:"PRODUCTNAME"`
	EditionID        string      `xml:"EDITIONID"`
	InstallationType string      `xml:"INSTALLATIONTYPE"`
	Languages        []string    `xml:"LANGUAGES>LANGUAGE"`
	DefaultLanguage  string      `xml:"LANGUAGES>DEFAULT"`
	Version          *xmlVersion `xml:"VERSION"`
}

// xmlVersion is WINDOWS/VERSION.
type xmlVersion struct {
	Major   string `xml:"MAJOR"`
	Minor   string `xml:"MINOR"`
	Build   string `xml:"BUILD"`
	SPBuild string `xml:"SPBUILD"`
}

// xmlFiletime is a Windows FILETIME split into two 32-bit hex numbers.
type xmlFiletime struct {
	High string `xml:"HIGHPART"`
	Low  string `xml:"LOWPART"`
}

// decodeXML decodes the UTF-16LE XML document in src. It refuses more than
// maxImages IMAGE elements as it meets them, so that a small hostile
// document cannot expand into a huge slice.
func decodeXML(src io.Reader, maxImages int) (*xmlWIM, error) {
	br := bufio.NewReader(src)
	// A read error here shows again on the next read.
	if bom, _ := br.Peek(2); bytes.Equal(bom, []byte{0xff, 0xfe}) {
		br.Discard(2)
	}
	u := &utf16Reader{src: br}
	raw := xml.NewDecoder(u)
	// The decoder sees UTF-8 whatever the declaration says.
	raw.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	doc, err := decodeWIM(xml.NewTokenDecoder(&shallow{dec: raw}), maxImages)
	if u.err != nil {
		return nil, fmt.Errorf("read xml: %w", u.err)
	}
	return doc, err
}

// maxDepth bounds how deep elements nest. WIM XML nests about five deep;
// encoding/xml keeps a stack entry per open element and, when it skips an
// element, does not bound the depth itself.
const maxDepth = 100

// shallow passes on the tokens of dec, failing past maxDepth.
type shallow struct {
	dec   *xml.Decoder
	depth int
}

// Token returns the next token of dec.
func (s *shallow) Token() (xml.Token, error) {
	tok, err := s.dec.Token()
	switch tok.(type) {
	case xml.StartElement:
		if s.depth++; s.depth > maxDepth {
			return nil, fmt.Errorf("elements nested more than %d deep", maxDepth)
		}
	case xml.EndElement:
		s.depth--
	}
	return tok, err
}

// decodeWIM decodes the root WIM element, keeping the children Read uses.
func decodeWIM(dec *xml.Decoder, maxImages int) (*xmlWIM, error) {
	if err := startRoot(dec); err != nil {
		return nil, err
	}
	doc := &xmlWIM{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, notWIM("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return doc, nil
		case xml.StartElement:
			if err := doc.decodeChild(dec, t, maxImages); err != nil {
				return nil, err
			}
		}
	}
}

// startRoot consumes tokens up to the opening tag of the WIM element.
func startRoot(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return notWIM("xml has no WIM element")
		}
		if err != nil {
			return notWIM("xml: %w", err)
		}
		if t, ok := tok.(xml.StartElement); ok {
			if t.Name.Local != "WIM" {
				return notWIM("xml root element is %s, want WIM", t.Name.Local)
			}
			return nil
		}
	}
}

// decodeChild decodes one child element of WIM.
func (doc *xmlWIM) decodeChild(dec *xml.Decoder, start xml.StartElement, maxImages int) error {
	var err error
	switch start.Name.Local {
	case "IMAGE":
		if len(doc.Images) == maxImages {
			return notWIM("xml has more images than the %d in the header", maxImages)
		}
		var img xmlImage
		err = dec.DecodeElement(&img, &start)
		doc.Images = append(doc.Images, img)
	case "TOTALBYTES":
		err = dec.DecodeElement(&doc.TotalBytes, &start)
	default:
		err = dec.Skip()
	}
	if err != nil {
		return notWIM("xml %s: %w", start.Name.Local, err)
	}
	return nil
}

// images converts the IMAGE elements, ordered by index, and checks that the
// indexes run from 1 to the number of images.
func (doc *xmlWIM) images() ([]Image, error) {
	var images []Image
	for _, x := range doc.Images {
		img, err := x.image()
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	slices.SortFunc(images, func(a, b Image) int { return cmp.Compare(a.Index, b.Index) })
	for i, img := range images {
		if img.Index != i+1 {
			return nil, notWIM("xml image indexes are not 1 to %d (found %d)", len(images), img.Index)
		}
	}
	return images, nil
}

// image converts one IMAGE element.
func (x *xmlImage) image() (Image, error) {
	index, err := strconv.Atoi(strings.TrimSpace(x.Index))
	if err != nil {
		return Image{}, notWIM("xml image index %q", x.Index)
	}
	w := &x.Windows
	return Image{
		Index:            index,
		Name:             x.Name,
		Description:      x.Description,
		DisplayName:      x.DisplayName,
		Flags:            x.Flags,
		Edition:          w.EditionID,
		Arch:             archName(w.Arch),
		Build:            w.Version.String(),
		ProductName:      w.ProductName,
		InstallationType: w.InstallationType,
		Languages:        w.Languages,
		DefaultLanguage:  w.DefaultLanguage,
		DirCount:         x.DirCount,
		FileCount:        x.FileCount,
		TotalBytes:       x.TotalBytes,
		CreatedAt:        x.CreationTime.Time(),
	}, nil
}

// archNames maps WINDOWS/ARCH codes, Windows' PROCESSOR_ARCHITECTURE_*
// values, to the names Go uses.
var archNames = map[int]string{0: "x86", 5: "arm", 6: "ia64", 9: "amd64", 12: "arm64"}

// archName names an architecture code, returning codes it does not know
// as they are.
func archName(code string) string {
	code = strings.TrimSpace(code)
	n, err := strconv.Atoi(code)
	if name, ok := archNames[n]; ok && err == nil {
		return name
	}
	return code
}

// String returns MAJOR.MINOR.BUILD.SPBUILD, "" if there is no version.
// Parts that are missing or not numbers count as 0, as in wimlib.
func (v *xmlVersion) String() string {
	if v == nil {
		return ""
	}
	parts := []string{v.Major, v.Minor, v.Build, v.SPBuild}
	for i, p := range parts {
		n, _ := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, ".")
}

// filetimeEpoch is 1601-01-01, where FILETIME starts, in Unix seconds.
const filetimeEpoch = -11644473600

// Time returns the time in UTC, or the zero time if it is missing, zero,
// not hex, or after year 9999, where it could not be written as JSON.
func (f xmlFiletime) Time() time.Time {
	hi, errHi := parseHex32(f.High)
	lo, errLo := parseHex32(f.Low)
	if errHi != nil || errLo != nil || hi|lo == 0 {
		return time.Time{}
	}
	ticks := hi<<32 | lo // 100 ns each
	t := time.Unix(int64(ticks/1e7)+filetimeEpoch, int64(ticks%1e7)*100).UTC()
	if t.Year() > 9999 {
		return time.Time{}
	}
	return t
}

// parseHex32 parses a 32-bit hex number, with or without "0x".
func parseHex32(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	return strconv.ParseUint(s, 16, 32)
}
