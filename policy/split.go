package policy

import (
	"strconv"
	"strings"
)

// Copy is one recipient's own copy of a split message.
type Copy struct {
	// Rcpts are the envelope recipients the copy is for, as given in RCPT:
	// the copy goes to the first; the others are the same mailbox spelled
	// differently (case, IDN form) and only leave the original.
	Rcpts []string
	// To is the To value the copy shows: the recipient's mailbox with its
	// display name, then the To addresses that stay visible.
	To string
	// Edits turn the original header into the copy's (see Apply).
	Edits []Edit
}

// RecipientKey is the key of an envelope recipient, the one used for
// duplicates: "A@x" and "a@X", and the U-label and A-label forms of one
// IDN domain, are one recipient. Records of split copies use it too, so
// that a retry spelling an address differently finds its record.
func RecipientKey(rcpt string) string {
	rcpt = strings.TrimSuffix(strings.TrimPrefix(rcpt, "<"), ">")
	return (&Address{Addr: rcpt, Domain: addrDomain(rcpt)}).key()
}

// split turns a conversion into copies: every envelope recipient whose
// address is a moved To address gets one. The To addresses are matched
// with the key used for duplicates, so case and the IDN form do not
// matter. Without a match the conversion stays a hide.
func (v *visible) split(d Decision, s Settings, rcpts []string) Decision {
	moved, kept := v.movedTo(s)
	byKey := make(map[string]int, len(moved))
	var copies []Copy
	for _, r := range rcpts {
		r = strings.TrimSuffix(strings.TrimPrefix(r, "<"), ">")
		k := RecipientKey(r)
		if i, ok := byKey[k]; ok {
			if i >= 0 {
				copies[i].Rcpts = append(copies[i].Rcpts, r)
			}
			continue
		}
		a, ok := moved[k]
		if !ok {
			byKey[k] = -1
			continue
		}
		byKey[k] = len(copies)
		to := formatAddress(a.name, a.addr)
		if !writesBack(to, k) {
			// A hostile address ("x@[,]") that would read back as
			// something else: showing it alone cannot be promised.
			d.Reason += "; split: a recipient's address does not read back as itself, so hide"
			return d
		}
		if kept != "" {
			to += ",\r\n " + kept
		}
		copies = append(copies, Copy{Rcpts: []string{r}, To: to})
	}
	if len(copies) == 0 {
		d.Reason += "; split: no envelope recipient is a moved To address, so hide"
		return d
	}
	d.Delivery = DeliverySplit
	d.Copies = copies
	d.Reason += "; split into " + plural(len(copies), "copy", "copies")
	if d.DryRun {
		return d
	}
	stamp := "split; to=" + strconv.Itoa(d.ToTotal) + " external=" + strconv.Itoa(d.ToExternal) +
		" moved=" + strconv.Itoa(d.Moved) + " copies=" + strconv.Itoa(len(copies))
	d.SplitEdits = withStamp(d.Edits, s.StampHeader, stamp)
	for i := range copies {
		c := &copies[i]
		c.Edits = withStamp(d.Edits, s.StampHeader, stamp)
		for j, e := range c.Edits {
			if e.Op == EditChange && e.Index == 1 && strings.EqualFold(e.Name, "To") {
				c.Edits[j].Value = c.To
			}
		}
	}
	return d
}

// mailbox is an address with its display name, for writing back.
type mailbox struct{ name, addr string }

// movedTo returns the To addresses moved out of sight by their key, with
// display names where the field parsed strictly, and the value of the To
// addresses that stay visible ("" for none).
func (v *visible) movedTo(s Settings) (map[string]mailbox, string) {
	to := &v.main.to
	kept, _ := v.remaining(to, s)
	strict := true
	for _, f := range to.fields {
		strict = strict && f.Mode == ParsedStrict
	}
	var names map[string]string
	if strict {
		names = to.displayNames()
	}
	moved := make(map[string]mailbox, len(to.addrs))
	for i := range to.addrs {
		a := &to.addrs[i]
		if kept != "" && a.Internal {
			continue
		}
		k := a.key()
		moved[k] = mailbox{name: names[k], addr: a.Addr}
	}
	return moved, kept
}

// writesBack reports whether a written address reads back as exactly the
// one address with key k.
func writesBack(value, k string) bool {
	pa := ParseAddressField(value)
	return len(pa.Addrs) == 1 && pa.Addrs[0].key() == k
}

// withStamp copies edits, with the stamp header's value replaced.
func withStamp(edits []Edit, name, value string) []Edit {
	out := make([]Edit, len(edits))
	copy(out, edits)
	for i, e := range out {
		if name != "" && e.Op == EditAdd && e.Name == name {
			out[i].Value = value
		}
	}
	return out
}
