package vhost

// Wire format of vhost-user messages: QEMU docs/interop/vhost-user.rst, "Message
// Specification". Every message is a 12-byte header (request u32, flags u32, size u32)
// and size bytes of payload, little-endian, with descriptors in SCM_RIGHTS ancillary data.

import (
	"encoding/binary"
	"fmt"
)

var (
	le = binary.LittleEndian
	be = binary.BigEndian
)

// Request is a front-end → back-end request type.
type Request uint32

// Requests (vhost-user.rst, "Front-end message types").
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetLogBase          Request = 6
	ReqSetLogFd            Request = 7
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
	ReqSendRARP            Request = 19
	ReqNetSetMTU           Request = 20
	ReqGetInflightFd       Request = 31
	ReqSetInflightFd       Request = 32
	ReqGetMaxMemSlots      Request = 36
	ReqAddMemReg           Request = 37
	ReqRemMemReg           Request = 38
	ReqSetStatus           Request = 39
	ReqGetStatus           Request = 40
	reqMax                 Request = 41
)

// Header flags.
const (
	flagVersionMask = 0x3
	flagVersion     = 0x1
	flagReply       = 0x4
	flagNeedReply   = 0x8
)

const (
	hdrSize = 12
	// maxPayload bounds a message body: the largest fixed message is the 8-region
	// memory table (8 + 8*32 bytes); nothing legitimate comes near 4 KiB.
	maxPayload = 4096
	// MaxMemRegions is the regions SET_MEM_TABLE carries (VHOST_MEMORY_BASELINE_NREGIONS).
	MaxMemRegions = 8
	// MaxMemSlots is what GET_MAX_MEM_SLOTS reports for ADD_MEM_REG (QEMU and DPDK
	// use 509 and 8 respectively; a vRouter's pods need few).
	MaxMemSlots = 32
	regionSize  = 32
)

// Virtio feature bits a vhost-user net backend deals in (VIRTIO 1.2 §5.1.3, §6).
const (
	FeatureMTU              = 1 << 3
	FeatureMAC              = 1 << 5
	FeatureMrgRxbuf         = 1 << 15
	FeatureStatus           = 1 << 16
	FeatureCtrlVQ           = 1 << 17
	FeatureGuestAnnounce    = 1 << 21
	FeatureMQ               = 1 << 22
	FeatureLogAll           = 1 << 26 // VHOST_F_LOG_ALL
	FeatureIndirectDesc     = 1 << 28
	FeatureEventIdx         = 1 << 29
	FeatureProtocolFeatures = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	FeatureVersion1         = 1 << 32
	FeatureRingPacked       = 1 << 34
	FeatureInOrder          = 1 << 35
)

// Protocol feature bits (vhost-user.rst, "Protocol features").
const (
	ProtoMQ                = 1 << 0
	ProtoLogShmfd          = 1 << 1
	ProtoRARP              = 1 << 2
	ProtoReplyAck          = 1 << 3
	ProtoNetMTU            = 1 << 4
	ProtoInflightShmfd     = 1 << 12
	ProtoConfigureMemSlots = 1 << 15
	ProtoStatus            = 1 << 16
)

// header is a decoded message header.
type header struct {
	req   Request
	flags uint32
	size  uint32
}

func decodeHeader(b []byte) header {
	b = b[:hdrSize]
	return header{Request(le.Uint32(b)), le.Uint32(b[4:]), le.Uint32(b[8:])}
}

func encodeHeader(b []byte, h header) {
	b = b[:hdrSize]
	le.PutUint32(b, uint32(h.req))
	le.PutUint32(b[4:], h.flags)
	le.PutUint32(b[8:], h.size)
}

// memRegion is VhostUserMemoryRegion.
type memRegion struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

func decodeRegion(b []byte) memRegion {
	b = b[:regionSize]
	return memRegion{le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:])}
}

func encodeRegion(b []byte, r memRegion) {
	b = b[:regionSize]
	le.PutUint64(b, r.GuestAddr)
	le.PutUint64(b[8:], r.Size)
	le.PutUint64(b[16:], r.UserAddr)
	le.PutUint64(b[24:], r.MmapOffset)
}

// vringState is VhostUserVringState (index, num).
type vringState struct{ Index, Num uint32 }

// vringAddr is VhostUserVringAddr; the addresses are front-end virtual addresses,
// except Log, a guest-physical address.
type vringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

const vringAddrLog = 1 // VHOST_VRING_F_LOG

// Payload sizes, checked exactly before dispatch.
const (
	sizeU64      = 8
	sizeState    = 8
	sizeAddr     = 40
	sizeLog      = 16
	sizeInflight = 24
	sizeMemReg   = 8 + regionSize
	sizeMemTable = 8 // plus regionSize per region; validated by the handler
)

// Vring file message (SET_VRING_KICK/CALL/ERR) u64: the index in bits 0-7, bit 8 set
// when no descriptor is passed (polling).
const (
	vringIndexMask = 0xff
	vringNoFd      = 1 << 8
)

// ProtocolError reports a malformed message: it names the request and the cause. It
// matches ErrProtocol with errors.Is.
type ProtocolError struct {
	Req Request
	Msg string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("vhost: %v: %s", e.Req, e.Msg)
}

// Unwrap returns ErrProtocol.
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

func protoErr(r Request, format string, a ...any) error {
	return &ProtocolError{Req: r, Msg: fmt.Sprintf(format, a...)}
}

var reqNames = map[Request]string{
	ReqGetFeatures: "GET_FEATURES", ReqSetFeatures: "SET_FEATURES", ReqSetOwner: "SET_OWNER",
	ReqResetOwner: "RESET_OWNER", ReqSetMemTable: "SET_MEM_TABLE", ReqSetLogBase: "SET_LOG_BASE",
	ReqSetLogFd: "SET_LOG_FD", ReqSetVringNum: "SET_VRING_NUM", ReqSetVringAddr: "SET_VRING_ADDR",
	ReqSetVringBase: "SET_VRING_BASE", ReqGetVringBase: "GET_VRING_BASE", ReqSetVringKick: "SET_VRING_KICK",
	ReqSetVringCall: "SET_VRING_CALL", ReqSetVringErr: "SET_VRING_ERR",
	ReqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", ReqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	ReqGetQueueNum: "GET_QUEUE_NUM", ReqSetVringEnable: "SET_VRING_ENABLE", ReqSendRARP: "SEND_RARP",
	ReqNetSetMTU: "NET_SET_MTU", ReqGetInflightFd: "GET_INFLIGHT_FD", ReqSetInflightFd: "SET_INFLIGHT_FD",
	ReqGetMaxMemSlots: "GET_MAX_MEM_SLOTS", ReqAddMemReg: "ADD_MEM_REG", ReqRemMemReg: "REM_MEM_REG",
	ReqSetStatus: "SET_STATUS", ReqGetStatus: "GET_STATUS",
}

func (r Request) String() string {
	if s, ok := reqNames[r]; ok {
		return s
	}
	return fmt.Sprintf("request(%d)", uint32(r))
}
