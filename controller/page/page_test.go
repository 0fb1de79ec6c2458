package page

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func identity(s string) string { return s }

// digitsOnly is a listing's key check: it made only keys of digits.
func digitsOnly(k string) error {
	if strings.Trim(k, "0123456789") != "" {
		return errors.New("not a key of this listing")
	}
	return nil
}

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultSize}, {1, 1}, {MaxSize, MaxSize}, {MaxSize + 1, MaxSize}, {1 << 40, MaxSize}} {
		r, err := Parse(tc.in, "", digitsOnly)
		if err != nil || r.size != tc.want {
			t.Errorf("Parse(%d, \"\") = size %d, %v; want %d, nil", tc.in, r.size, err, tc.want)
		}
	}
	for _, size := range []int{-1, -1 << 31} {
		if _, err := Parse(size, "", digitsOnly); !errors.Is(err, ErrInvalidSize) || !strings.Contains(err.Error(), "use 0 for the default") {
			t.Errorf("Parse(%d, \"\") = %v, want ErrInvalidSize saying what to use", size, err)
		}
	}
}

// TestParseRefusesForgedTokens: a token no listing made is refused with
// what to pass instead, never read as a place to start.
func TestParseRefusesForgedTokens(t *testing.T) {
	for name, token := range map[string]string{
		"not base64":          "%%%",
		"padded base64":       Token("12") + "==",
		"empty key":           "=",
		"key the check fails": Token("12/x"),
		"over MaxTokenLen":    Token(strings.Repeat("1", MaxTokenLen)),
		"1 MiB":               strings.Repeat("x", 1<<20),
	} {
		_, err := Parse(10, token, digitsOnly)
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "pass the next_page_token") {
			t.Errorf("Parse(%s) = %v, want ErrInvalidToken saying what to pass", name, err)
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("Parse(%s) error is %d bytes long; the token should be quoted cut short", name, len(err.Error()))
		}
	}
	r, err := Parse(10, Token("0042"), digitsOnly)
	if err != nil || r.after != "0042" {
		t.Errorf("Parse(Token(0042)) = %+v, %v; want after 0042", r, err)
	}
}

// pages lists items page by page, calling between after each page; it
// returns every item seen, in order.
func pages(t *testing.T, items *[]string, order Order, size int, between func(page int)) []string {
	t.Helper()
	var seen []string
	token := ""
	for p := 0; ; p++ {
		r, err := Parse(size, token, digitsOnly)
		if err != nil {
			t.Fatalf("Parse(page %d token %q) = %v", p, token, err)
		}
		var got []string
		got, token = Cut(*items, r, order, identity)
		seen = append(seen, got...)
		if token == "" {
			return seen
		}
		if p > len(*items) {
			t.Fatalf("still paging after %d pages: %v", p, seen)
		}
		between(p)
	}
}

// TestCutAcrossChanges: items added and removed between pages, before and
// after the page boundary, skip or repeat none of the items that were
// there throughout, in either order.
func TestCutAcrossChanges(t *testing.T) {
	for _, order := range []Order{Ascending, Descending} {
		items := []string{"10", "20", "30", "40", "50", "60", "70"}
		sortKeys := func() {
			slices.Sort(items)
			if order == Descending {
				slices.Reverse(items)
			}
		}
		sortKeys()
		seen := pages(t, &items, order, 2, func(page int) {
			switch page {
			case 0: // one before and one after the boundary, and the boundary item goes
				items = append(items, "05", "95")
				items = slices.DeleteFunc(items, func(s string) bool { return s == "20" || s == "60" })
			case 1:
				items = append(items, "35", "45")
			}
			sortKeys()
		})
		want := []string{"10", "20", "30", "40", "45", "50", "70", "95"}
		if order == Descending {
			want = []string{"70", "60", "50", "40", "35", "30", "10", "05"}
		}
		if !slices.Equal(seen, want) {
			t.Errorf("order %d: pages = %v, want %v", order, seen, want)
		}
	}
}

func TestCutLastPageHasNoToken(t *testing.T) {
	items := []string{"1", "2", "3", "4"}
	for _, size := range []int{4, 5, MaxSize} {
		r, _ := Parse(size, "", digitsOnly)
		if got, next := Cut(items, r, Ascending, identity); len(got) != 4 || next != "" {
			t.Errorf("Cut(4 items, size %d) = %v, %q; want all 4 and no token", size, got, next)
		}
	}
	r, _ := Parse(2, Token("4"), digitsOnly)
	if got, next := Cut(items, r, Ascending, identity); len(got) != 0 || next != "" {
		t.Errorf("Cut after the last item = %v, %q; want none and no token", got, next)
	}
	if got, next := Cut(items, Request{}, Ascending, identity); len(got) != 4 || next != "" {
		t.Errorf("Cut(4 items, zero Request) = %v, %q; want a default page: all 4 and no token", got, next)
	}
}
