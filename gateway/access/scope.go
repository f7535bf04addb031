package access

import "encoding/hex"

// Scope names whose a piece of per-tenant state is (the gateway's own filters): a key
// by its name and a prefix of its hash (so a key re-added under an old name is another
// tenant), an anonymous client by its address block, "" without a tenant. Never the
// key itself.
func (c *Tenant) Scope() string {
	switch {
	case c == nil:
		return ""
	case c.block.IsValid():
		return "anon:" + c.block.String()
	}
	return "key:" + c.name + ":" + hex.EncodeToString(c.hash[:8])
}
