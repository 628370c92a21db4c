package policy

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/emersion/go-message/mail"
)

// tally counts the distinct addresses of a visible list.
type tally struct {
	total, external int
	// orgs counts organizations (count: domains): distinct domains, the
	// organization's own addresses all counting as one. Only counted when
	// asked for.
	orgs int
	seen dedupe
	// orgSeen holds the external domains counted (allocated only for
	// count: domains); ownOrg is set once an internal address was.
	orgSeen *dedupe
	ownOrg  bool
}

// add counts a if its key k is new, and reports whether it was. With cfg,
// it counts organizations too.
func (t *tally) add(k string, a *Address, cfg *Config) bool {
	if !t.seen.add(k) {
		return false
	}
	t.total++
	if !a.Internal {
		t.external++
	}
	if cfg == nil {
		return true
	}
	if a.Internal {
		if !t.ownOrg {
			t.ownOrg = true
			t.orgs++
		}
		return true
	}
	if t.orgSeen == nil {
		t.orgSeen = &dedupe{}
	}
	// Every outside organization a reader can take the address for:
	// its domain, the one its local part routes to, the first reading of
	// a domain joined across blanks (see Config.internal).
	for _, d := range [...]string{a.Domain, routedDomain(a.Addr), a.firstReading()} {
		if d != "" && !cfg.Internal.Contains(d) && t.orgSeen.add(d) {
			t.orgs++
		}
	}
	return true
}

// fieldSet is the parsed content of all fields with one name.
type fieldSet struct {
	name   string
	fields []FieldAddresses
	values []string
	// addrs are the distinct addresses in order of appearance.
	addrs []Address
	tally
}

// lists are the To and Cc fields, or the Resent-To and Resent-Cc fields.
type lists struct {
	to, cc fieldSet
	// combined counts To and Cc as one list; only with convert_cc.
	combined *tally
}

func newLists(to, cc string) *lists {
	l := &lists{}
	l.to.name, l.cc.name = to, cc
	return l
}

// noResent stands for the resent lists of a message without any.
var noResent = newLists("Resent-To", "Resent-Cc")

// visible is what recipients see: the To and Resent-To fields, and Cc and
// Resent-Cc when the rule reads them.
type visible struct {
	main lists
	// resent is noResent until a Resent-To or Resent-Cc field is read,
	// which is rare: redirected mail.
	resent *lists
	from   []Field
}

func (v *visible) problem() ParseProblem {
	p := ParseOK
	for _, fs := range []*fieldSet{&v.main.to, &v.main.cc, &v.resent.to, &v.resent.cc} {
		for _, f := range fs.fields {
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

// list returns the counts of the To list (with Cc under convert_cc) or of
// the resent list (Resent-To, with Resent-Cc).
func (v *visible) list(resent, withCc bool) *tally {
	l := &v.main
	if resent {
		l = v.resent
	}
	if withCc && l.combined != nil {
		return l.combined
	}
	return &l.to.tally
}

// readVisible reads the To and Resent-To fields (and Cc and Resent-Cc with
// withCc) and keeps From for replacement: sender. With parse false it only
// lists the fields, unread (ParseFailed), so that a conversion can still
// replace every one: that is what happens to fields over the size limits.
// With orgs it also counts organizations (count: domains).
func readVisible(cfg *Config, h []Field, withCc, parse, orgs bool) *visible {
	v := &visible{resent: noResent}
	v.main.to.name, v.main.cc.name = "To", "Cc"
	if withCc {
		v.main.combined = &tally{}
	}
	lastDomain, lastInternal := "\x00", false
	var orgCfg *Config
	if orgs {
		orgCfg = cfg
	}
	for _, f := range h {
		var fs *fieldSet
		var combined *tally
		switch {
		case strings.EqualFold(f.Name, "To"):
			fs, combined = &v.main.to, v.main.combined
		case withCc && strings.EqualFold(f.Name, "Cc"):
			fs, combined = &v.main.cc, v.main.combined
		case strings.EqualFold(f.Name, "From"):
			v.from = append(v.from, f)
			continue
		case strings.EqualFold(f.Name, "Resent-To"), withCc && strings.EqualFold(f.Name, "Resent-Cc"):
			if v.resent == noResent {
				v.resent = newLists("Resent-To", "Resent-Cc")
				if withCc {
					v.resent.combined = &tally{}
				}
			}
			fs, combined = &v.resent.to, v.resent.combined
			if isCcName(f.Name) {
				fs = &v.resent.cc
			}
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
		// The first field's slice is compacted in place: distinct
		// addresses are written at or before the index being read, and
		// not moved at all while there is no repeat.
		inPlace := fs.addrs == nil
		if inPlace {
			fs.addrs = pa.Addrs[:0]
		}
		fs.seen.hint += len(pa.Addrs)
		if withCc {
			combined.seen.hint += len(pa.Addrs)
		}
		for i := range pa.Addrs {
			a := &pa.Addrs[i]
			k := a.key()
			// Lists repeat domains: classify each run of one domain once.
			if a.Domain != lastDomain || a.Domain == "" {
				lastDomain, lastInternal = a.Domain, a.Domain == "" || cfg.Internal.Contains(a.Domain)
			}
			a.Internal = lastInternal && (a.Domain == "" || a.lower && routedDomain(a.Addr) == "" || cfg.internal(a))
			if withCc {
				combined.add(k, a, orgCfg)
			}
			// To and Cc de-duplicate separately: the same address may be
			// visible in both.
			if !fs.add(k, a, orgCfg) {
				continue
			}
			if n := len(fs.addrs); inPlace && n == i {
				fs.addrs = fs.addrs[:n+1]
			} else {
				fs.addrs = append(fs.addrs, *a)
			}
		}
	}
	v.release()
	return v
}

// release gives back the hash tables of v's tallies once the fields are
// read: the decision needs only the counts from then on.
func (v *visible) release() {
	for _, l := range []*lists{&v.main, v.resent} {
		if l == noResent {
			continue
		}
		for _, t := range []*tally{&l.to.tally, &l.cc.tally, l.combined} {
			if t != nil {
				t.seen.release()
				if t.orgSeen != nil {
					t.orgSeen.release()
				}
			}
		}
	}
}

// internal reports whether a is one of the organization's own addresses.
// A bare name (no domain) is: Postfix qualifies it with $myorigin. An
// address whose local part routes it elsewhere (`x%ext.example@city`,
// `ext.example!x@city`) is internal only if that domain is too: Postfix
// may send it there. An address whose domain obsolete syntax joined across
// blanks, folds or comments (`b@ext.example .city.example.jp`) is
// internal only if both readings are: a reader may see either.
func (c *Config) internal(a *Address) bool {
	if a.Domain == "" {
		return true
	}
	if !c.Internal.Contains(a.Domain) {
		return false
	}
	if r := a.firstReading(); r != "" && !c.Internal.Contains(r) {
		return false
	}
	if r := routedDomain(a.Addr); r != "" {
		return c.Internal.Contains(r)
	}
	return true
}

// firstReading returns the normalized domain of Addr when it is not the
// same as Domain: the lenient reader writes the first run of a domain
// joined across blanks into Addr (see findAddrSpecs). It returns "" for
// every other address.
func (a *Address) firstReading() string {
	if a.lower {
		return ""
	}
	at := strings.LastIndexByte(a.Addr, '@')
	if at < 0 || a.Addr[at+1:] == a.Domain {
		return ""
	}
	if d := normalizedOrRaw(a.Addr[at+1:]); d != a.Domain {
		return d
	}
	return ""
}

// routedDomain returns the normalized domain that the local part of addr
// routes to (the last "%" part, or the first "!" part), or "".
func routedDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	local := addr[:at]
	if i := strings.LastIndexByte(local, '%'); i >= 0 {
		return normalizedOrRaw(strings.Trim(local[i+1:], `"`))
	}
	if i := strings.IndexByte(local, '!'); i >= 0 {
		return normalizedOrRaw(strings.Trim(local[:i], `"`))
	}
	return ""
}

// dedupe is a set of address keys: a short list for the usual handful of
// addresses, a hash set once there are many, so that the cost stays linear.
type dedupe struct {
	arr   [8]string
	small []string
	// table holds 64-bit keyed hashes of the keys once there are many, by
	// open addressing (linear probing, at most half full, 0 = free):
	// cheaper than a map and free of pointers for the garbage collector.
	// A collision among a few thousand keys (probability about n²/2⁶⁵)
	// would only under-count one address, and the seed is secret, so no
	// sender can aim for one.
	table []uint64
	// buf holds table, from and back to tablePool.
	buf *hashTable
	n   int
	// hint is how many keys may come, to size the table once.
	hint int
}

// hashTable is the memory of a dedupe table, all zero while in tablePool.
type hashTable struct{ slots []uint64 }

// tablePool recycles the tables of dedupe. A decision needs its tables only
// while it reads the fields, and a long list makes one of several KiB:
// allocating it anew for every message doubles the garbage of reading.
var tablePool = sync.Pool{New: func() any { return &hashTable{} }}

// newTable gives d a free table of size slots (a power of two).
func (d *dedupe) newTable(size int) {
	b := tablePool.Get().(*hashTable)
	if cap(b.slots) < size {
		b.slots = make([]uint64, size)
	}
	d.buf, d.table, d.n = b, b.slots[:size], 0
}

// release clears d's table and gives it back to tablePool; d must not be
// added to afterwards.
func (d *dedupe) release() {
	if d.buf == nil {
		return
	}
	clear(d.table) // no hash of this message stays behind
	tablePool.Put(d.buf)
	d.buf, d.table = nil, nil
}

// dedupeSeed keys the hashes of dedupe for the life of the process.
var dedupeSeed = maphash.MakeSeed()

// add reports whether k was new.
func (d *dedupe) add(k string) bool {
	if d.table != nil {
		return d.addHash(maphash.String(dedupeSeed, k))
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
	size := 64
	for size < 2*d.hint {
		size <<= 1
	}
	d.newTable(size)
	for _, s := range d.small {
		d.addHash(maphash.String(dedupeSeed, s))
	}
	return d.addHash(maphash.String(dedupeSeed, k))
}

// addHash adds a hash to the table and reports whether it was new.
func (d *dedupe) addHash(h uint64) bool {
	if h == 0 {
		h = 1 // 0 marks a free slot
	}
	if 2*(d.n+1) > len(d.table) {
		oldBuf, old := d.buf, d.table
		d.newTable(2 * len(old))
		for _, o := range old {
			if o != 0 {
				d.addHash(o)
			}
		}
		clear(old)
		tablePool.Put(oldBuf)
	}
	mask := uint64(len(d.table) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch d.table[i] {
		case 0:
			d.table[i] = h
			d.n++
			return true
		case h:
			return false
		}
	}
}

// convert fills in the edits of a conversion: of the To list (To, and Cc
// with convert_cc) when main is set, of the resent list (Resent-To, and
// Resent-Cc with convert_cc) when resent is.
func (v *visible) convert(d Decision, s Settings, main, resent bool) Decision {
	var edits []Edit
	if main {
		edits = v.convertFields(edits, &d, &v.main.to, s, true)
		if s.ConvertCc {
			edits = v.convertFields(edits, &d, &v.main.cc, s, false)
		}
	}
	if resent {
		edits = v.convertFields(edits, &d, &v.resent.to, s, len(v.resent.to.fields) > 0)
		if s.ConvertCc {
			edits = v.convertFields(edits, &d, &v.resent.cc, s, false)
		}
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

// convertFields appends the edits that convert the fields of fs: the
// first keeps what remains, or the replacement when replace is set (To
// and Resent-To), or goes; the others go.
func (v *visible) convertFields(edits []Edit, d *Decision, fs *fieldSet, s Settings, replace bool) []Edit {
	if !replace && len(fs.fields) == 0 {
		return edits
	}
	value, moved := v.remaining(fs, s)
	d.Moved += moved
	if value == "" && replace {
		value = v.replacementValue(s.Replacement)
	}
	first := 1
	if value != "" {
		edits = append(edits, Edit{Op: EditChange, Name: fs.name, Index: 1, Value: value})
		first = 2
	}
	return append(edits, deleteRest(fs.name, len(fs.fields), first)...)
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
			k := Address{Addr: a.Address, Domain: addrDomain(a.Address)}
			names[k.key()] = a.Name
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
	for i := range fs.addrs {
		if a := &fs.addrs[i]; a.Internal {
			keep = append(keep, formatAddress(names[a.key()], a.Addr))
		}
	}
	return strings.Join(keep, ",\r\n "), fs.total - len(keep)
}

// formatAddress writes an address for a re-written field: the bare
// addr-spec when it has no display name, otherwise the name (RFC 2047
// encoded when not ASCII) and the address in angle brackets.
func formatAddress(name, addr string) string {
	ma := mail.Address{Name: name, Address: addr}
	if name == "" {
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
				return formatAddress(list[0].Name, list[0].Address)
			}
		}
	}
	return "undisclosed-recipients:;"
}

func stampValue(d Decision) string {
	s := fmt.Sprintf("converted; to=%d external=%d moved=%d", d.ToTotal, d.ToExternal, d.Moved)
	if d.ResentTotal > 0 {
		s += fmt.Sprintf(" resent_to=%d resent_external=%d", d.ResentTotal, d.ResentExternal)
	}
	if d.Settings.ConvertCc {
		s += fmt.Sprintf(" cc=%d cc_external=%d", d.CcTotal, d.CcExternal)
	}
	return s
}
