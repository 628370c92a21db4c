package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/d--j/go-milter/internal/wire"
)

var errCloseSession = errors.New("stop current milter processing")

// A macro packet holds at most maxMacroData bytes and maxMacroPairs
// name/value pairs. Postfix sends a handful of macros per stage
// (milter_*_macros), each value at most a few hundred bytes.
const (
	maxMacroData  = 16 * 1024
	maxMacroPairs = 128
)

// maxESMTPArgs bounds the ESMTP arguments of a MAIL or RCPT packet.
// Postfix passes on what the SMTP client gave, a handful at most (SIZE,
// BODY, SMTPUTF8, RET, ENVID, AUTH; NOTIFY, ORCPT), and its smtpd refuses
// a command line over line_length_limit (2048 bytes) anyway.
const maxESMTPArgs = 64

// esmtpArgs joins the ESMTP arguments of a MAIL or RCPT packet with
// spaces. The NULs are counted first: a packet of NULs must not become a
// million strings.
func esmtpArgs(data []byte) (string, error) {
	if n := bytes.Count(data, []byte{0}); n > maxESMTPArgs {
		return "", fmt.Errorf("more than %d ESMTP arguments (%d)", maxESMTPArgs, n)
	}
	return strings.Join(wire.DecodeCStrings(data), " "), nil
}

// serverSession keeps session state during MTA communication
type serverSession struct {
	server      *Server
	version     uint32
	actions     OptAction
	protocol    OptProtocol
	maxDataSize DataSize
	conn        net.Conn
	macros      *macrosStages
	backendId   uint64
	// peer names the MTA end of conn in warnings.
	peer     string
	mu       sync.Mutex
	modifier *modifier
}

// init sets up the internal state of the session
func (m *serverSession) init(server *Server, conn net.Conn, version uint32, actions OptAction, protocol OptProtocol) {
	m.server = server
	m.conn = conn
	m.version = version
	m.actions = actions
	m.protocol = protocol
	m.macros = newMacroStages()
	if addr := conn.RemoteAddr(); addr != nil && addr.String() != "" {
		m.peer = addr.Network() + ":" + addr.String()
	} else if conn.LocalAddr() != nil {
		m.peer = "unix:" + conn.LocalAddr().String()
	}
}

// warn logs a warning about this session, naming its peer.
func (m *serverSession) warn(format string, v ...interface{}) {
	LogWarning("%s: "+format, append([]interface{}{m.peer}, v...)...)
}

// readPacket reads incoming milter packet
func (m *serverSession) readPacket(timeout time.Duration) (*wire.Message, error) {
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	if conn == nil {
		return nil, errCloseSession
	}
	return wire.ReadPacketMax(conn, timeout, m.server.options.maxPacketSize)
}

// writePacket sends a milter response packet to socket stream
func (m *serverSession) writePacket(msg *wire.Message) error {
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	if conn == nil {
		return errCloseSession
	}
	return wire.WritePacket(conn, msg, m.server.options.writeTimeout)
}

func (m *serverSession) negotiate(msg *wire.Message, milterVersion uint32, milterActions OptAction, milterProtocol OptProtocol, callback NegotiationCallbackFunc, macroRequests macroRequests, usedMaxData DataSize) (*Response, error) {
	if msg.Code != wire.CodeOptNeg {
		return nil, fmt.Errorf("milter: negotiate: unexpected package with code %c", msg.Code)
	}
	if len(msg.Data) < 4*3 /* version + action mask + proto mask */ {
		return nil, fmt.Errorf("milter: negotiate: unexpected data size: %d", len(msg.Data))
	}
	mtaVersion := binary.BigEndian.Uint32(msg.Data[:4])
	mtaActionMask := OptAction(binary.BigEndian.Uint32(msg.Data[4:]))
	mtaProtoMask := OptProtocol(binary.BigEndian.Uint32(msg.Data[8:]))
	offeredMaxDataSize := DataSize64K
	if uint32(mtaProtoMask)&optMds1M == optMds1M {
		offeredMaxDataSize = DataSize1M
	} else if uint32(mtaProtoMask)&optMds256K == optMds256K {
		offeredMaxDataSize = DataSize256K
	}
	mtaProtoMask = mtaProtoMask & (^OptProtocol(optInternal))

	var err error
	var maxDataSize DataSize
	if callback != nil {
		if m.version, m.actions, m.protocol, maxDataSize, err = callback(mtaVersion, milterVersion, mtaActionMask, milterActions, mtaProtoMask, milterProtocol, offeredMaxDataSize); err != nil {
			return nil, err
		}
		if m.version < 2 || m.version > MaxServerProtocolVersion {
			return nil, fmt.Errorf("milter: negotiate: unsupported protocol version: %d", m.version)
		}
	} else {
		if mtaVersion < 2 || mtaVersion > MaxServerProtocolVersion {
			return nil, fmt.Errorf("milter: negotiate: unsupported protocol version: %d", mtaVersion)
		}
		m.version = mtaVersion
		if milterActions&mtaActionMask != milterActions {
			return nil, fmt.Errorf("milter: negotiate: MTA does not offer required actions. offered: %q requested: %q", mtaActionMask, milterActions)
		}
		m.actions = milterActions & mtaActionMask
		if milterProtocol&mtaProtoMask != milterProtocol {
			return nil, fmt.Errorf("milter: negotiate: MTA does not offer required protocol options. offered: %q requested: %q", mtaProtoMask, milterProtocol)
		}
		m.protocol = milterProtocol & mtaProtoMask
		maxDataSize = offeredMaxDataSize
	}
	if maxDataSize != DataSize64K && maxDataSize != DataSize256K && maxDataSize != DataSize1M {
		maxDataSize = DataSize64K
	}
	if usedMaxData == 0 {
		usedMaxData = maxDataSize
	}
	m.maxDataSize = usedMaxData
	m.modifier = newModifier(m, modifierStateReadOnly)

	// TODO: activate skip response according to m.version

	sizeMask := uint32(0)
	if maxDataSize == DataSize256K {
		sizeMask = optMds256K
	} else if maxDataSize == DataSize1M {
		sizeMask = optMds1M
	}

	// prepare response data
	var buffer bytes.Buffer
	for _, value := range []uint32{m.version, uint32(m.actions), uint32(m.protocol) | sizeMask} {
		if err := binary.Write(&buffer, binary.BigEndian, value); err != nil {
			return nil, fmt.Errorf("milter: negotiate: %w", err)
		}
	}
	// send the macros we want to have in the response
	if macroRequests != nil && mtaActionMask&OptSetMacros != 0 {
		for st := 0; st < int(StageEndMarker) && st < len(macroRequests); st++ {
			if macroRequests[st] != nil && len(macroRequests[st]) > 0 {
				if err := binary.Write(&buffer, binary.BigEndian, uint32(st)); err != nil {
					return nil, fmt.Errorf("milter: negotiate: %w", err)
				}
				buffer.WriteString(strings.Join(macroRequests[st], " "))
				buffer.WriteByte(0)
			}
		}
	} else if macroRequests != nil {
		LogWarning("milter could not send the needed macros since MTA does not support this")
	}
	// build negotiation response
	return newResponse(wire.CodeOptNeg, buffer.Bytes()), nil
}

// processMsg processes incoming milter commands
func (m *serverSession) processMsg(backend Milter, msg *wire.Message) (*Response, error) {
	switch msg.Code {
	case wire.CodeOptNeg:
		return nil, fmt.Errorf("milter: negotiate: can only be called once in a connection")

	case wire.CodeConn:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("milter: conn: unexpected data size: %d", len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageHelo)
		hostname, rest, ok := wire.CutCString(msg.Data)
		if !ok || len(rest) == 0 {
			return nil, fmt.Errorf("milter: conn: host name not terminated or no protocol family")
		}
		msg.Data = rest
		// get protocol family
		protocolFamily := msg.Data[0]
		msg.Data = msg.Data[1:]
		// get port and address
		var port uint16
		var address string
		if protocolFamily == 'L' || protocolFamily == '4' || protocolFamily == '6' {
			if len(msg.Data) < 2 {
				return nil, fmt.Errorf("milter: conn: unexpected data size: %d", len(msg.Data))
			}
			port = binary.BigEndian.Uint16(msg.Data)
			msg.Data = msg.Data[2:]
			// get address
			address = wire.ReadCString(msg.Data)
		}
		// convert family to human-readable string and validate
		family := ""
		switch protocolFamily {
		case 'U':
			family = "unknown"
		case 'L':
			family = "unix"
		case '4':
			family = "tcp4"
			addr := net.ParseIP(address)
			if addr == nil || addr.To4() == nil {
				return nil, fmt.Errorf("milter: conn: unexpected ip4 address: %q", address)
			}
		case '6':
			family = "tcp6"
			var addr net.IP
			// remove optional IPv6: prefix
			address = strings.TrimPrefix(address, "IPv6:")
			// also accept [dead::cafe] style IPv6 addresses
			if len(address) > 2 && address[0] == '[' && address[len(address)-1] == ']' {
				addr = net.ParseIP(address[1 : len(address)-1])
			} else {
				addr = net.ParseIP(address)
			}
			if addr == nil {
				return nil, fmt.Errorf("milter: conn: unexpected ip6 address: %q", address)
			}
			address = addr.String()
		default:
			return nil, fmt.Errorf("milter: conn: unexpected protocol family: %c", protocolFamily)
		}
		// run handler and return
		resp, err := backend.Connect(hostname, family, port, address, m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeHelo:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("milter: helo: unexpected data size: %d", len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageMail)
		name := wire.ReadCString(msg.Data)
		resp, err := backend.Helo(name, m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeMail:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("milter: mail: unexpected data size: %d", len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageRcpt)
		from, data, ok := wire.CutCString(msg.Data)
		if !ok {
			return nil, fmt.Errorf("milter: mail: sender not terminated")
		}

		// the rest of the data are ESMTP arguments, separated by a zero byte.
		args, err := esmtpArgs(data)
		if err != nil {
			return nil, fmt.Errorf("milter: mail: %w", err)
		}
		resp, err := backend.MailFrom(RemoveAngle(from), args, m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeRcpt:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("milter: rcpt: unexpected data size: %d", len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageData)
		to, rest, ok := wire.CutCString(msg.Data)
		if !ok {
			return nil, fmt.Errorf("milter: rcpt: recipient not terminated")
		}

		// the rest of the data are ESMTP arguments, separated by a zero byte.
		args, err := esmtpArgs(rest)
		if err != nil {
			return nil, fmt.Errorf("milter: rcpt: %w", err)
		}
		resp, err := backend.RcptTo(RemoveAngle(to), args, m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeData:
		m.macros.DelStageAndAbove(StageEOH)
		resp, err := backend.Data(m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeHeader:
		if len(msg.Data) < 2 {
			return nil, fmt.Errorf("milter: header: unexpected data size: %d", len(msg.Data))
		}
		// Two C strings (the last NUL optional). Cut rather than split:
		// a packet of NULs must not become a million strings.
		name, rest, ok := wire.CutCString(msg.Data)
		value, after, _ := wire.CutCString(rest)
		if !ok || len(rest) == 0 || len(after) != 0 {
			return nil, fmt.Errorf("milter: header: not a name and a value")
		}
		resp, err := backend.Header(name, value, m.modifier.withState(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeEOH:
		m.macros.DelStageAndAbove(StageEOM)
		resp, err := backend.Headers(m.modifier.withState(modifierStateProgressOnly))
		return resp, err

	case wire.CodeBody:
		resp, err := backend.BodyChunk(msg.Data, m.modifier.withState(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeEOB:
		resp, err := backend.EndOfMessage(m.modifier.withState(modifierStateReadWrite))
		if err == nil && (resp == nil || resp.Continue()) {
			// if the backend does not return a response or one that does not terminate, we assume it is a success
			resp = RespAccept
		}
		return resp, err

	case wire.CodeUnknown:
		cmd := wire.ReadCString(msg.Data)
		resp, err := backend.Unknown(cmd, m.modifier.withState(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeMacro:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("milter: macro: unexpected data size: %d", len(msg.Data))
		}
		// Each stage keeps its last macro packet until the next one or
		// the end of the message: bound what a peer can make us keep.
		if len(msg.Data) > maxMacroData || bytes.Count(msg.Data[1:], []byte{0}) > 2*maxMacroPairs {
			return nil, fmt.Errorf("milter: macro: more than %d bytes or %d macros", maxMacroData, maxMacroPairs)
		}
		var stage MacroStage
		switch msg.MacroCode() {
		case wire.CodeConn:
			stage = StageConnect
		case wire.CodeHelo:
			stage = StageHelo
		case wire.CodeMail:
			stage = StageMail
		case wire.CodeRcpt:
			stage = StageRcpt
		case wire.CodeData:
			stage = StageData
		case wire.CodeEOH:
			stage = StageEOH
		case wire.CodeEOB:
			stage = StageEOM
		case wire.CodeUnknown, wire.CodeHeader, wire.CodeAbort, wire.CodeBody:
			stage = StageEndMarker // this stage gets cleared after the command
		default:
			// No MTA sends this; a peer that does could flood the log
			// with one warning per packet, so end the session instead.
			return nil, fmt.Errorf("milter: macro: for unknown command %q", msg.MacroCode())
		}
		m.macros.DelStageAndAbove(stage)
		// convert data to Go strings
		data := wire.DecodeCStrings(msg.Data[1:])
		if len(data) != 0 {
			if len(data)%2 == 1 {
				data = append(data, "")
			}
			m.macros.SetStage(stage, data...)
		}
		// do not send response
		return nil, nil

	case wire.CodeAbort:
		// abort current message and start over
		err := backend.Abort(m.modifier.withState(modifierStateReadOnly))
		m.macros.DelStageAndAbove(StageHelo)
		return nil, err

	case wire.CodeQuitNewConn:
		// abort current connection and start over
		m.macros.DelStageAndAbove(StageConnect)
		return nil, backend.NewConnection(m.modifier.withState(modifierStateReadOnly))

	case wire.CodeQuit:
		// client requested session close, we handle the session end in HandleMilterCommands
		return nil, nil

	default:
		// print error and close session
		m.warn("Unrecognized command code: %s", msg.Code)
		return nil, errCloseSession
	}
}

// ignoreError checks if the error is a closing error
// It checks for EOF, net.ErrClosed, and errCloseSession
func ignoreError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, errCloseSession) || errors.Is(err, net.ErrClosed)
}

func (m *serverSession) closeConn() {
	m.mu.Lock()
	conn := m.conn
	m.conn = nil
	m.mu.Unlock()
	if conn != nil {
		if err := conn.Close(); err != nil && !ignoreError(err) {
			m.warn("Error closing connection: %v", err)
		}
	}
}

// HandleMilterCommands processes all milter commands in the same connection
func (m *serverSession) HandleMilterCommands() {
	defer m.closeConn()
	// Runs before closeConn, so that its reply can still be written.
	defer m.recoverPanic()

	// first do the negotiation - with a hard-coded timeout of 1 second
	msg, err := m.readPacket(time.Second)
	if err != nil {
		if !ignoreError(err) {
			m.warn("Error reading milter command: %v", err)
		}
		return
	}
	resp, err := m.negotiate(msg, m.server.options.maxVersion, m.server.options.actions, m.server.options.protocol, m.server.options.negotiationCallback, m.server.options.macrosByStage, 0)
	if err != nil {
		if !ignoreError(err) {
			m.warn("Error negotiating: %v", err)
		}
		return
	}
	if err = m.writePacket(resp.Response()); err != nil {
		if !ignoreError(err) {
			m.warn("Error writing packet: %v", err)
		}
		return
	}
	var backend Milter
	backend, m.backendId = m.server.newMilter(m.version, m.actions, m.protocol, m.maxDataSize)
	m.modifier.milterId = m.backendId
	defer func() {
		backend.Cleanup(m.modifier.withState(modifierStateReadOnly))
	}()
	if err := backend.NewConnection(m.modifier.withState(modifierStateReadOnly)); err != nil {
		return
	}

	lastCode := wire.CodeOptNeg
	lastOrder := 0
	codeOrderMap := map[wire.Code]int{
		wire.CodeConn:   1,
		wire.CodeHelo:   2,
		wire.CodeMail:   3,
		wire.CodeRcpt:   4,
		wire.CodeData:   5,
		wire.CodeHeader: 6,
		wire.CodeEOH:    7,
		wire.CodeBody:   8,
		wire.CodeEOB:    9,
	}
	readTimeout := m.server.options.readTimeout
	hasDecision := false
	// inMessage is true from MAIL FROM until end-of-message or abort;
	// outside a message the (usually shorter) idle timeout applies.
	inMessage := false

	// now we can process the events
	for {
		timeout := readTimeout
		if !inMessage && m.server.options.idleTimeout != 0 {
			timeout = m.server.options.idleTimeout
		}
		msg, err = m.readPacket(timeout)
		if err != nil {
			if !ignoreError(err) {
				m.warn("Error reading milter command: %v", err)
			}
			return
		}

		// Postfix always sends us an Abort when an SMTP connection gets reused.
		// Sendmail does not do that when we accepted/rejected the message before EOB.
		// We synthesize an Abort message to the backend when we detect that an Abort was not sent.
		// This is not really necessary (the backend should be able to handle this), but it does not hurt
		// and makes Milter backend development less error-prone.
		code := msg.MacroCode()
		currentCommand, ok := codeOrderMap[code]
		if ok {
			if lastOrder > currentCommand && lastCode != wire.CodeAbort {
				_, err = m.processMsg(backend, &wire.Message{Code: wire.CodeAbort})
				if err != nil {
					if !ignoreError(err) {
						// log error condition
						m.warn("Error performing milter command: %v", err)
						if resp != nil && !m.skipResponse(msg.Code) {
							_ = m.writePacket(resp.Response())
						}
					}
					return
				}
			}
			lastOrder = currentCommand
		} else {
			// Postfix sometimes sends us multiple Aborts - one is totally enough, so filter them out
			if code == wire.CodeAbort && lastCode == wire.CodeAbort {
				continue
			}
		}
		lastCode = code
		switch msg.Code {
		case wire.CodeMail:
			inMessage = true
		case wire.CodeEOB, wire.CodeAbort, wire.CodeQuitNewConn:
			inMessage = false
		}

		var resp *Response
		resp, err = m.processMsg(backend, msg)
		if err != nil {
			if !ignoreError(err) {
				// log error condition
				m.warn("Error performing milter command: %v", err)
				if resp != nil && !m.skipResponse(msg.Code) {
					_ = m.writePacket(resp.Response())
				}
			}
			return
		}
		hasDecision = resp != nil && !resp.Continue()
		if msg.Code == wire.CodeRcpt && hasDecision && resp != RespDiscard {
			hasDecision = false
		}
		if hasDecision {
			m.macros.DelStageAndAbove(StageMail)
		}

		// if we have a response and did not tell the MTA to skip the response
		if resp != nil && !m.skipResponse(msg.Code) {
			// send back response message
			if err = m.writePacket(resp.Response()); err != nil {
				if !ignoreError(err) {
					m.warn("Error writing packet: %v", err)
				}
				return
			}
		}

		if msg.Code == wire.CodeQuit {
			return
		}

		// Gracefully exit only after MTA send CodeQuitNewConn (CodeQuit always exits anyway)
		// We cannot exit at other commands since this would break the milter connection mid-way in an SMTP connection.
		// The MTA would temp fail (depends on configuration) all commands of this SMTP connection after we broke the
		// milter connection.
		if msg.Code == wire.CodeQuitNewConn && m.server.shuttingDown() {
			return
		}
	}
}

func (m *serverSession) skipResponse(code wire.Code) bool {
	switch code {
	case wire.CodeConn:
		return m.protocol&OptNoConnReply != 0
	case wire.CodeHelo:
		return m.protocol&OptNoHeloReply != 0
	case wire.CodeMail:
		return m.protocol&OptNoMailReply != 0
	case wire.CodeRcpt:
		return m.protocol&OptNoRcptReply != 0
	case wire.CodeData:
		return m.protocol&OptNoDataReply != 0
	case wire.CodeUnknown:
		return m.protocol&OptNoUnknownReply != 0
	case wire.CodeEOH:
		return m.protocol&OptNoEOHReply != 0
	case wire.CodeHeader:
		return m.protocol&OptNoHeaderReply != 0
	case wire.CodeBody:
		return m.protocol&OptNoBodyReply != 0
	default:
		return false
	}
}
