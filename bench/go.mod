module github.com/dpkit/dpkit/bench

go 1.26.0

replace github.com/dpkit/dpkit => ../

require (
	github.com/cilium/ebpf v0.22.0
	github.com/dpkit/dpkit v0.0.0
	github.com/gaissmai/bart v0.30.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
)
