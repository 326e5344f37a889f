package proxier

import (
	"encoding/hex"

	"k8s.io/apimachinery/pkg/types"
)

// packedUID is an object's UID in 16 bytes, for the cache records: the API server makes
// UIDs as UUIDs, whose 36-character text would cost a record a string header and a
// 48-byte allocation (about 0.6 MB at 10,000 Services) where these 16 bytes fit in the
// padding of a serviceRecord's size class. The zero value means unknown: a UID that is
// not a UUID in its canonical lower-case text is not kept.
type packedUID [16]byte

// uuidDashes are the positions of the dashes in a UUID's text.
var uuidDashes = [4]int{8, 13, 18, 23}

// packUID returns uid packed, or the zero value when it is not a canonical UUID.
func packUID(uid types.UID) packedUID {
	var p packedUID
	s := string(uid)
	if len(s) != 36 {
		return packedUID{}
	}
	digits := make([]byte, 0, 32)
	prev := 0
	for _, d := range uuidDashes {
		if s[d] != '-' {
			return packedUID{}
		}
		digits = append(digits, s[prev:d]...)
		prev = d + 1
	}
	digits = append(digits, s[prev:]...)
	if _, err := hex.Decode(p[:], digits); err != nil || p.UID() != uid {
		return packedUID{} // not hex, or not in lower case
	}
	return p
}

// UID returns the UID's text, or "" when it is unknown.
func (p packedUID) UID() types.UID {
	if p == (packedUID{}) {
		return ""
	}
	h := hex.EncodeToString(p[:])
	return types.UID(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}
