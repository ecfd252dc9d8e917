package chat

import (
	"errors"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// Ending is what a server says as it ends a connection: "ERR <Code>
// <Detail>" then "BYE <Code>" when Code is set, else "BYE <Bye>" alone.
// Refusal, Farewell and BadFrame give the chat's endings for the engine's
// reasons; the work app speaks them too.
type Ending struct {
	Code, Detail string
	Bye          string
}

// Refusal is the ending for a connection a model refuses before Open
// (handler.Refuser): ERR server-full when one of the server's own caps is
// reached (handler.ErrServerFull), ERR too-many-connections when the
// client's address has the most connections allowed open
// (handler.ErrTooManyConns), ERR connecting-too-fast when it opens them
// faster than allowed (handler.ErrConnRate); BYE error for any other
// reason.
func Refusal(reason error) Ending {
	switch {
	case errors.Is(reason, handler.ErrServerFull):
		return Ending{Code: CodeServerFull, Detail: "the server is at its connection limit"}
	case errors.Is(reason, handler.ErrTooManyConns):
		return Ending{Code: CodeTooManyConns, Detail: "your address has the most connections the server allows open"}
	case errors.Is(reason, handler.ErrConnRate):
		return Ending{Code: CodeConnRate, Detail: "your address opens connections faster than the server allows"}
	}
	return Ending{Bye: ByeError}
}

// Farewell is the ending for a connection the engine closes on its own
// (handler.Farewell): ERR slow-consumer, ERR frame-too-large (unconsumed
// input), ERR server-full, BYE shutting-down or BYE frame-timeout for the
// engine's reasons; BYE error for any other.
func Farewell(reason error) Ending {
	switch {
	case errors.Is(reason, handler.ErrOverflow):
		return Ending{Code: CodeSlowConsumer, Detail: "outbound buffer over its limit"}
	case errors.Is(reason, handler.ErrShutdown):
		return Ending{Bye: ByeShuttingDown}
	case errors.Is(reason, handler.ErrInputTooLarge):
		return Ending{Code: CodeFrameTooLarge, Detail: "unconsumed input over the server's limit"}
	case errors.Is(reason, handler.ErrServerFull):
		return Ending{Code: CodeServerFull, Detail: "the server is at its connection limit"}
	case errors.Is(reason, handler.ErrFrameTimeout):
		return Ending{Bye: ByeFrameTimeout}
	}
	return Ending{Bye: ByeError}
}

// BadFrame is the ending for a framing error from a frame.Decoder: ERR
// frame-too-large for a frame over the limit (frame.ErrTooLarge), ERR
// bad-frame for any other, the error as the detail.
func BadFrame(err error) Ending {
	code := CodeBadFrame
	if errors.Is(err, frame.ErrTooLarge) {
		code = CodeFrameTooLarge
	}
	return Ending{Code: code, Detail: err.Error()}
}
