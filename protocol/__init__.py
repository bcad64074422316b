"""The ajq wire protocol: message kinds, the msgpack codec with strict validation, error codes.

Shared by the broker, the worker and the client; imports nothing else of ajq. See SPEC.md.
"""

from ajq.protocol.codec import Frame, decode, decode_value, encode, encode_value
from ajq.protocol.defaults import DEFAULT_ENDPOINT, DEFAULT_QUEUE
from ajq.protocol.errors import ErrorCode, ProtocolError
from ajq.protocol.limits import Limits
from ajq.protocol.messages import Kind
from ajq.protocol.states import CANCELLED_ERROR, FINAL_STATES, WAITING_STATES, TaskState

PROTOCOL_VERSION = 1

__all__ = [
    "CANCELLED_ERROR",
    "DEFAULT_ENDPOINT",
    "DEFAULT_QUEUE",
    "FINAL_STATES",
    "PROTOCOL_VERSION",
    "WAITING_STATES",
    "ErrorCode",
    "Frame",
    "Kind",
    "Limits",
    "ProtocolError",
    "TaskState",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]
