package policy

import (
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/emersion/go-message/mail"
)

// fieldSet is the parsed content of all fields with one name.
type fieldSet struct {
	fields []FieldAddresses
	values []string
	// addrs are the distinct addresses in order of appearance.
	addrs           []Address
	total, external int
	seen            dedupe
}

// visible is what recipients see: the To and Cc fields, read.
type visible struct {
	to, cc fieldSet
	// combinedTotal and combinedExternal count To and Cc as one list
	// (convert_cc); only set when Cc is read.
	combinedTotal, combinedExternal int
	from                            []Field
}

func (v *visible) problem() ParseProblem {
	p := ParseOK
	for _, fs := range [][]FieldAddresses{v.to.fields, v.cc.fields} {
		for _, f := range fs {
			switch f.Mode {
			case ParseFailed:
				return ParseUnreadable
			case ParsedLenient:
				p = ParseLenient
			}
		}
	}
	return p
}

// readVisible reads the To fields (and Cc with withCc) and keeps From for
// replacement: sender. With parse false it only lists the fields, unread
// (ParseFailed), so that a conversion can still replace every one: that is
// what happens to fields over the size limits.
func readVisible(cfg *Config, h []Field, withCc, parse bool) *visible {
	v := &visible{}
	var combined dedupe
	for _, f := range h {
		var fs *fieldSet
		switch {
		case strings.EqualFold(f.Name, "To"):
			fs = &v.to
		case withCc && strings.EqualFold(f.Name, "Cc"):
			fs = &v.cc
		case strings.EqualFold(f.Name, "From"):
			v.from = append(v.from, f)
			continue
		default:
			continue
		}
		if !parse {
			fs.fields = append(fs.fields, FieldAddresses{Mode: ParseFailed})
			continue
		}
		pa := ParseAddressField(f.Value)
		fs.fields = append(fs.fields, pa)
		fs.values = append(fs.values, f.Value)
		if fs.addrs == nil {
			// The first field's slice is compacted in place: distinct
			// addresses are written at or before the index being read.
			fs.addrs = pa.Addrs[:0]
		}
		fs.seen.hint += len(pa.Addrs)
		combined.hint += len(pa.Addrs)
		for _, a := range pa.Addrs {
			k := a.key()
			a.Internal = cfg.Internal.Contains(a.Domain)
			if withCc && combined.add(k) {
				v.combinedTotal++
				if !a.Internal {
					v.combinedExternal++
				}
			}
			// To and Cc de-duplicate separately: the same address may be
			// visible in both.
			if !fs.seen.add(k) {
				continue
			}
			fs.addrs = append(fs.addrs, a)
			fs.total++
			if !a.Internal {
				fs.external++
			}
		}
	}
	return v
}

// dedupe is a set of address keys: a short list for the usual handful of
// addresses, a map once there are many, so that the cost stays linear.
type dedupe struct {
	arr   [8]string
	small []string
	// m holds 64-bit hashes of the keys once there are many: cheaper than
	// strings, and a collision among a few thousand keys (probability
	// about n²/2⁶⁵) would only under-count one address.
	m map[uint64]struct{}
	// hint is how many keys may come, to size the map once.
	hint int
}

// dedupeSeed keys the hashes of dedupe for the life of the process.
var dedupeSeed = maphash.MakeSeed()

// add reports whether k was new.
func (d *dedupe) add(k string) bool {
	if d.m != nil {
		h := maphash.String(dedupeSeed, k)
		if _, ok := d.m[h]; ok {
			return false
		}
		d.m[h] = struct{}{}
		return true
	}
	for _, s := range d.small {
		if s == k {
			return false
		}
	}
	if len(d.small) < len(d.arr) {
		if d.small == nil {
			d.small = d.arr[:0]
		}
		d.small = append(d.small, k)
		return true
	}
	d.m = make(map[uint64]struct{}, max(d.hint, 4*len(d.arr)))
	for _, s := range d.small {
		d.m[maphash.String(dedupeSeed, s)] = struct{}{}
	}
	d.m[maphash.String(dedupeSeed, k)] = struct{}{}
	return true
}

// convert fills in the edits of a conversion.
func (v *visible) convert(d Decision, s Settings, h []Field) Decision {
	var edits []Edit
	toValue, toMoved := v.remaining(&v.to, s)
	d.Moved = toMoved
	if toValue == "" {
		toValue = v.replacementValue(s.Replacement)
	}
	edits = append(edits, Edit{Op: EditChange, Name: "To", Index: 1, Value: toValue})
	edits = append(edits, deleteRest("To", len(v.to.fields), 2)...)
	if s.ConvertCc && len(v.cc.fields) > 0 {
		ccValue, ccMoved := v.remaining(&v.cc, s)
		d.Moved += ccMoved
		first := 1
		if ccValue != "" {
			edits = append(edits, Edit{Op: EditChange, Name: "Cc", Index: 1, Value: ccValue})
			first = 2
		}
		edits = append(edits, deleteRest("Cc", len(v.cc.fields), first)...)
	}
	d.Delivery = DeliveryHide
	if s.DryRun {
		d.DryRun = true
		return d
	}
	if s.StampHeader != "" {
		edits = append(edits, Edit{Op: EditAdd, Name: s.StampHeader, Value: stampValue(d)})
	}
	d.Edits = edits
	return d
}

// displayNames decodes the display names of a field set's addresses with
// the full parser (the fast scanner does not decode them), keyed like
// Address.key. Only the rare paths that write addresses back need them.
func (fs *fieldSet) displayNames() map[string]string {
	names := map[string]string{}
	for _, v := range fs.values {
		list, err := mail.ParseAddressList(unfold(v))
		if err != nil {
			continue
		}
		for _, a := range list {
			names[Address{Addr: a.Address, Domain: addrDomain(a.Address)}.key()] = a.Name
		}
	}
	return names
}

// deleteRest deletes fields first..n of a name, the highest index first so
// that no deletion shifts the index of one still to come.
func deleteRest(name string, n, first int) []Edit {
	var edits []Edit
	for i := n; i >= first; i-- {
		edits = append(edits, Edit{Op: EditChange, Name: name, Index: i, Value: ""})
	}
	return edits
}

// remaining returns the value that stays in a converted field ("" when no
// address stays) and how many addresses were moved out of it. With
// MoveExternal the internal addresses stay, but only when every field of
// that name parsed strictly: a leniently read field cannot be re-written
// faithfully, so then every address leaves.
func (v *visible) remaining(fs *fieldSet, s Settings) (string, int) {
	if s.Move != MoveExternal {
		return "", fs.total
	}
	for _, f := range fs.fields {
		if f.Mode != ParsedStrict {
			return "", fs.total
		}
	}
	names := fs.displayNames()
	var keep []string
	for _, a := range fs.addrs {
		if a.Internal {
			a.Name = names[a.key()]
			keep = append(keep, formatAddress(a))
		}
	}
	return strings.Join(keep, ",\r\n "), fs.total - len(keep)
}

// formatAddress writes an address for a re-written field: the bare
// addr-spec when it has no display name, otherwise the name (RFC 2047
// encoded when not ASCII) and the address in angle brackets.
func formatAddress(a Address) string {
	ma := mail.Address{Name: a.Name, Address: a.Addr}
	if a.Name == "" {
		return strings.Trim(ma.String(), "<>")
	}
	return ma.String()
}

// replacementValue is the To value written when no address stays.
func (v *visible) replacementValue(r Replacement) string {
	switch r.Kind {
	case ReplaceGroup:
		return groupValue(r.Label)
	case ReplaceSender:
		for _, f := range v.from {
			list, err := mail.ParseAddressList(unfold(f.Value))
			if err == nil && len(list) > 0 {
				a := Address{Name: list[0].Name, Addr: list[0].Address}
				return formatAddress(a)
			}
		}
	}
	return "undisclosed-recipients:;"
}

func stampValue(d Decision) string {
	s := fmt.Sprintf("converted; to=%d external=%d moved=%d", d.ToTotal, d.ToExternal, d.Moved)
	if d.Settings.ConvertCc {
		s += fmt.Sprintf(" cc=%d cc_external=%d", d.CcTotal, d.CcExternal)
	}
	return s
}
