// Package page is the one paging scheme of the controller's List RPCs
// (ListJobs, ListImages): keyset paging. A listing sorts its items by a
// string key, distinct for each item; a page token is the key of the last
// item of the previous page, base64url-encoded, so the next page starts
// after that item wherever it now is. An item added or removed between two
// pages moves no other item from one page to the next: none is skipped or
// repeated, and the server keeps no state between pages.
//
// A token is checked before it is used: one longer than MaxTokenLen, not
// base64url, or whose key the listing cannot have made is ErrInvalidToken,
// which the API returns as InvalidArgument.
package page
