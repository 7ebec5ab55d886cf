package route

import "errors"

// Sentinel errors returned by the control-plane API. Use errors.Is.
var (
	ErrBadVRF        = errors.New("route: VRF id out of range")
	ErrBadPrefix     = errors.New("route: invalid prefix")
	ErrNotFound      = errors.New("route: no such route")
	ErrNoNextHop     = errors.New("route: no such next hop")
	ErrNextHopInUse  = errors.New("route: next hop still referenced")
	ErrBadNextHop    = errors.New("route: invalid next hop")
	ErrTableFull     = errors.New("route: next-hop table full")
	ErrNeighbourFull = errors.New("route: neighbour table full")
	ErrBadOptions    = errors.New("route: invalid options")
	ErrShortFrame    = errors.New("route: frame too short")
	ErrNotARPRequest = errors.New("route: not an ARP request")
	ErrNotSolicit    = errors.New("route: not a valid neighbour solicitation")
	ErrNotOwned      = errors.New("route: target address not owned")
	ErrShortBuffer   = errors.New("route: buffer capacity too small for reply")
)
